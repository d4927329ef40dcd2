import BreakGlassAuditFormat
import BreakGlassCore
import Foundation
import Logging
import Synchronization

/// The durable, tamper-evident audit log: append-only segments with CRC-framed canonical records, a
/// single writer thread with group commit (one write and one fdatasync per batch; callers resume
/// only when their event is durable), an RFC 6962 tree over the records, and signed C2SP checkpoints.
/// The rest of the current segment is zero-filled ahead of the writer (`SegmentZeroer`), so that
/// each flush carries only data.
///
/// After any write or flush error the writer stops for good and every later append fails: the
/// gateway then refuses access (no audit, no access).
public final class AuditLog: AuditSink, Sendable {
    // Shared state is the queue (a value, in a `SpinningCondition`), the marks (a `Mutex`) and the
    // guess of the next sequence number (an atomic); the files and the tree belong to the writer
    // thread (`AuditWriter`), which owns them.

    /// How the log is doing.
    public enum Health: Sendable, Equatable {
        case ok
        /// Writing, with a warning (low free space, a mirror failing).
        case degraded(String)
        /// Stopped; nothing more can be recorded.
        case failed(String)
    }

    typealias Queue = AuditWriterQueue<Pending, CheckedContinuation<String, any Error>, CheckedContinuation<Void, Never>>

    /// An event in the writer's queue.
    struct Pending: AuditQueueEntry, Sendable {
        /// What is to be written: a record encoded but for its sequence number by a caller that
        /// waits anyway (`append`), or an event the writer encodes (`submit`, called on event loops
        /// that should not spend the time).
        enum Payload: Sendable {
            case prepared(AuditRecord.Prepared)
            case event(AuditEvent)
        }

        var payload: Payload
        /// The record framed by its caller for the sequence number it was queued under; the writer
        /// uses it while that number still holds (an event refused or dropped before it shifts it).
        var framed: Framed?
        /// The caller waiting for durability; nil for events submitted without waiting.
        var continuation: UnsafeContinuation<Int, any Error>?

        var isAwaited: Bool { continuation != nil }
    }

    /// A record framed for one sequence number, with its leaf hash.
    struct Framed: Sendable {
        var sequence: Int
        var frame: [UInt8]
        var leaf: TreeHash
    }

    /// The audit folder: segments, checkpoints and state.
    public let directory: String
    /// The log's origin: the gateway name written into each record and checkpoint.
    public let origin: String
    /// The key that signs checkpoints.
    public let signer: NoteSigner
    /// The tuning and wiring the log was opened with.
    public let options: AuditLogOptions
    /// What recovery did when the log was opened.
    public let recoveredBytes: Int
    let logger: Logger
    /// The queue, its waiters and the log's condition.
    let queue: SpinningCondition<Queue>
    /// The sequence number the next queued event will have, if every event before it is written: the
    /// queue's `nextSequence`, stored under the queue's lock, read without it only as a guess (see `append`).
    let nextQueued: Atomic<Int>
    /// Where the tree stood at recent checkpoints, and the proofs running.
    let marks: Mutex<AuditMarks>

    private init(directory: String, origin: String, signer: NoteSigner, options: AuditLogOptions, logger: Logger, recovered: AuditRecovery)
    {
        self.directory = directory
        self.origin = origin
        self.signer = signer
        self.options = options
        self.logger = logger
        self.recoveredBytes = recovered.recoveredBytes
        let settings = Queue.Settings(
            maximumBatch: options.maximumBatch, submitDelay: options.submitDelay, checkpointInterval: options.checkpointInterval)
        var queue = Queue(
            settings: settings, maximumPending: options.maximumPending, durableSize: recovered.tree.size,
            checkpointSize: recovered.checkpointSize, now: .now)
        if let warning = recovered.warning { queue.warn(warning) }
        self.queue = SpinningCondition(queue)
        self.nextQueued = Atomic(recovered.tree.size)
        self.marks = Mutex(
            AuditMarks(first: TreeMark(time: Date(), tree: recovered.tree, segment: recovered.segmentIndex, offset: recovered.segmentEnd)))
    }

    /// Opens (or creates) the log in `directory`, recovering a torn tail and checking the latest
    /// checkpoint; any other damage refuses to open with the segment and offset.
    public static func open(
        directory: String,
        origin: String,
        signer: NoteSigner,
        options: AuditLogOptions = AuditLogOptions(),
        logger: Logger
    ) throws(AuditLogError) -> AuditLog {
        let recovered = try AuditRecovery.run(directory: directory, origin: origin, signer: signer, options: options, logger: logger)
        let log = AuditLog(directory: directory, origin: origin, signer: signer, options: options, logger: logger, recovered: recovered)
        let thread = Thread { AuditWriter(log: log, recovered: recovered).run() }
        thread.name = "breakglass-audit-writer"
        thread.start()
        if let resumed = recovered.resumedAt {
            // The start path trusted the saved state; the records before it are re-checked (frames,
            // sequence, root against the checkpoint) in the background, and any damage stops the log.
            let root = recovered.resumedRoot
            Thread.detachNewThread { log.check(until: resumed, root: root) }
        }
        if log.recoveredBytes > 0 {
            let event = AuditEvent(kind: .auditRecovered, time: Date(), fields: ["truncated_bytes": .integer(Int64(log.recoveredBytes))])
            Task { try? await log.record(event) }
        }
        return log
    }

    // MARK: AuditSink

    /// Appends an event and returns once it is durable.
    public func record(_ event: AuditEvent) async throws {
        _ = try await append(event)
    }

    /// Appends an event, using a place taken with `reserve` when `reserved` is true, and returns once it is durable.
    public func record(_ event: AuditEvent, reserved: Bool) async throws {
        _ = try await append(event, reserved: reserved)
    }

    /// Appends an event and returns its sequence number once it is durable; `reserved` uses a place
    /// taken with `reserve`.
    public func append(_ event: AuditEvent, reserved: Bool = false) async throws -> Int {
        let record = try AuditRecord.prepare(gateway: origin, event: event)
        // Framed (and hashed) before the lock, for the number the record will most likely get: the
        // lock is then held only to queue it. When another record took that number in between, it
        // is framed again under the lock, so that queue order and sequence numbers agree and the
        // writer only copies frames.
        let guess = nextQueued.load(ordering: .relaxed)
        var frame: [UInt8] = []
        frame.reserveCapacity(SegmentFormat.frameHeaderSize + record.maximumCount)
        var leaf = Self.appendFrame(record, sequence: guess, to: &frame)
        // Unchecked: every path below resumes it exactly once (refused here, or queued and then
        // resumed by the writer or by `stop`), and the check's allocation and atomics would run for
        // every record.
        return try await withUnsafeThrowingContinuation { continuation in
            let admission = enqueue(event.kind, reserved: reserved) { sequence in
                if sequence != guess {
                    frame.removeAll(keepingCapacity: true)
                    leaf = Self.appendFrame(record, sequence: sequence, to: &frame)
                }
                return Pending(
                    payload: .prepared(record), framed: Framed(sequence: sequence, frame: frame, leaf: leaf), continuation: continuation)
            }
            switch admission {
            case .queued(let wake):
                if wake { queue.signal() }
            case .refused(let reason):
                continuation.resume(throwing: AuditUnavailableError(reason: reason))
            }
        }
    }

    /// Queues the entry `make` builds for the sequence number it gets, under the lock, and publishes
    /// the next number as the guess `append` frames for.
    private func enqueue(
        _ kind: AuditEvent.Kind, reserved: Bool, make: (_ sequence: Int) -> Pending
    ) -> Queue.Admission<String> {
        queue.withLock { state in
            let admission = state.enqueue(kind, reserved: reserved, make: make)
            nextQueued.store(state.nextSequence, ordering: .relaxed)
            return admission
        }
    }

    /// Whether an event of this kind would be queued now: false once the writer stopped, while closing,
    /// when the queue is full, or for access and denial events while the log writes into its reserve.
    public func accepts(_ kind: AuditEvent.Kind) -> Bool {
        queue.withLock { $0.accepts(kind) }
    }

    /// Takes a place in the queue for one later event of this kind; false when it would be refused now.
    public func reserve(_ kind: AuditEvent.Kind) -> Bool {
        queue.withLock { $0.reserve(kind) }
    }

    /// Gives back a place taken with `reserve` that no event will use.
    public func cancelReservation() {
        queue.withLock { $0.cancelReservation() }
    }

    /// Queues an event without waiting; it joins the next group commit. If it cannot be written the
    /// log stops (and says why), so later `accepts` calls refuse.
    public func submit(_ event: AuditEvent) {
        submit(event, reserved: false)
    }

    /// `submit`, using a place taken with `reserve` when `reserved` is true.
    public func submit(_ event: AuditEvent, reserved: Bool) {
        let admission = enqueue(event.kind, reserved: reserved) { _ in
            Pending(payload: .event(event), framed: nil, continuation: nil)
        }
        switch admission {
        case .queued(let wake):
            if wake { queue.signal() }
        case .refused(let reason):
            logger.error("audit event not recorded", metadata: ["kind": "\(event.kind)", "reason": "\(reason)"])
        }
    }

    /// Signs and publishes a checkpoint covering everything durable now; returns the signed note.
    public func checkpoint() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            switch queue.withLock({ $0.requestCheckpoint(continuation) }) {
            case .queued(let wake):
                if wake { queue.signal() }
            case .refused(let error):
                continuation.resume(throwing: error)
            }
        }
    }

    /// Writes what is queued, signs a last checkpoint and stops the writer.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            switch queue.withLock({ $0.close(continuation) }) {
            case .queued(let wake):
                if wake { queue.signal() }
            case .closed:
                continuation.resume()
            }
        }
    }

    /// How the log is doing now: failed once the writer stopped, degraded in the reserve or with a warning.
    public var health: Health {
        queue.withLock { $0.health }
    }

    /// Free bytes on the log's file system now, or nil when it cannot be read.
    public var freeBytes: Int? { FileIO.freeBytes(directory) }

    /// Number of durable records.
    public var size: Int {
        queue.withLock { $0.durableSize }
    }

    /// The writer stopped for good: every event and checkpoint request waiting is refused, and so is
    /// everything later.
    func stop(_ error: AuditLogError) {
        let stopped = queue.withLock { $0.stop(error) }
        if stopped.first { logger.critical("audit log stopped: no more access will be granted", metadata: ["error": "\(error.message)"]) }
        for pending in stopped.entries { pending.continuation?.resume(throwing: AuditUnavailableError(reason: error.message)) }
        for waiter in stopped.waiters { waiter.resume(throwing: stopped.failure) }
    }

    func setWarning(_ text: String) {
        queue.withLock { $0.warn(text) }
        logger.warning("audit log degraded", metadata: ["reason": "\(text)"])
    }

    /// Appends the record's frame for `sequence` and returns its leaf hash.
    static func appendFrame(_ record: AuditRecord.Prepared, sequence: Int, to frames: inout [UInt8]) -> TreeHash {
        let payload = SegmentFormat.appendFrame(to: &frames) { record.append(sequence: sequence, to: &$0) }
        return frames.withUnsafeBytes { TreeHash.leaf(UnsafeRawBufferPointer(rebasing: $0[payload])) }
    }

    /// Re-checks the records before `resumed` (frames, sequence, root against the checkpoint) and
    /// stops the log at any damage.
    private func check(until resumed: ResumePoint, root: MerkleTree.Hash?) {
        do {
            var tree = AppendOnlyTree()
            _ = try AuditLogReader.scan(
                directory: directory, until: resumed, decode: false,
                subtrees: AuditLogReader.SubtreeMode(gateway: origin, cuts: []),
                visitSubtrees: { subtrees in
                    for subtree in subtrees { tree.append(subtree: subtree.hash, size: subtree.size) }
                }
            ) { visit in
                tree.append(leaf: visit.leaf ?? TreeHash.leaf(visit.payload))
            }
            guard tree.size >= resumed.sequence else {
                throw AuditLogError(
                    .rollback,
                    "the log holds \(tree.size) records but its latest checkpoint covers \(resumed.sequence): records were lost (rollback or truncation)"
                )
            }
            guard tree.root == root else {
                throw AuditLogError(
                    .corrupt, "the first \(resumed.sequence) records do not match the latest signed checkpoint: the log was altered")
            }
            logger.info("audit log: background check of \(tree.size) records passed")
        } catch let error as AuditLogError {
            stop(error)
        } catch {
            stop(AuditLogError(.corrupt, "\(error)"))
        }
    }
}
