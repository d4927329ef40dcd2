import BreakGlassAuditFormat
import BreakGlassCore
import CoreMetrics
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The durable, tamper-evident audit log: append-only segments with CRC-framed canonical records, a
/// single writer thread with group commit (one write and one fdatasync per batch; callers resume
/// only when their event is durable), an RFC 6962 tree over the records, and signed C2SP checkpoints.
/// The rest of the current segment is zero-filled ahead of the writer (`SegmentZeroer`), so that
/// each flush carries only data.
///
/// After any write or flush error the writer stops for good and every later append fails: the
/// gateway then refuses access (no audit, no access).
public final class AuditLog: AuditSink, @unchecked Sendable {
    // Mutable state lives behind `condition` (queue, flags, health) or belongs to the writer thread
    // alone (files, tree, sequence); that split is what makes the class safe to share.

    /// How the log is doing.
    public enum Health: Sendable, Equatable {
        case ok
        /// Writing, with a warning (low free space, a mirror failing).
        case degraded(String)
        /// Stopped; nothing more can be recorded.
        case failed(String)
    }

    private struct Pending {
        /// What is to be written: a record encoded but for its sequence number by a caller that
        /// waits anyway (`append`), or an event the writer encodes (`submit`, called on event loops
        /// that should not spend the time).
        enum Payload {
            case prepared(AuditRecord.Prepared)
            case event(AuditEvent)
        }

        var payload: Payload
        /// The record framed by its caller for the sequence number it was queued under; the writer
        /// uses it while that number still holds (an event refused or dropped before it shifts it).
        var framed: Framed?
        /// The caller waiting for durability; nil for events submitted without waiting.
        var continuation: UnsafeContinuation<Int, any Error>?
    }

    /// A record framed for one sequence number, with its leaf hash.
    private struct Framed {
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
    private let logger: Logger
    private let condition = SpinningCondition()
    private let hook: CheckpointHook?

    // Guarded by `condition`.
    private var queue: [Pending] = []
    private var checkpointWaiters: [CheckedContinuation<String, any Error>] = []
    /// What the log takes in: refusals, reservations and its condition (under `condition`).
    private var intake: AuditIntake
    private var durableSize = 0
    /// The sequence number the next queued event will have, if every event before it is written.
    /// Changed under `condition` only; read without it only as a guess (see `append`).
    private var nextQueued: Int {
        get { nextQueuedNumber.load(ordering: .relaxed) }
        set { nextQueuedNumber.store(newValue, ordering: .relaxed) }
    }
    private let nextQueuedNumber = Atomic<Int>(0)
    /// The queue length at which the waiting writer wants a signal; `Int.max` while it works (it
    /// looks at the queue again before it waits). Saves a wake-up per event under load.
    private var wakeAt = Int.max
    /// Queued events whose callers wait for them (`append`); while there are none, the writer may
    /// let the queue fill a moment (`submitDelay`).
    private var awaitedQueued = 0
    /// The writer waits for more submitted events: any waiting caller wakes it.
    private var lingering = false
    private var writerDone: CheckedContinuation<Void, Never>?
    private var writerFinished = false
    /// Where the tree stood at recent checkpoints (oldest first), so that proofs for recent records
    /// need to read only the records after one of them.
    private var marks: [TreeMark] = []
    private static let maximumMarks = 1024
    /// Proofs being computed (each reads segments on a thread of its own); more are refused.
    private var proofsRunning = 0
    private static let maximumProofs = 2

    // Writer thread only (and `open` before the thread starts).
    private var tree = AppendOnlyTree()
    private var segmentIndex = 0
    private var segmentFD: Int32 = -1
    private var segmentEnd = 0
    /// Zero-fills the current segment ahead of the writer.
    private var zeroer: SegmentZeroer?
    private var historyFD: Int32 = -1
    private var lastCheckpointSize = -1
    private var lastCheckpointTime = ContinuousClock.now
    private var lastBatchSize = 0
    /// The newest checkpoint this writer signed.
    private var lastNote: String?
    private let meters: Meters?

    /// The writer's instruments, when the options name a metrics factory.
    private struct Meters {
        var appends: Counter
        var batch: Recorder
        var fsync: CoreMetrics.Timer

        init(_ factory: any MetricsFactory) {
            appends = Counter(label: "breakglass_audit_appends_total", factory: factory)
            batch = Recorder(label: "breakglass_audit_batch_records", factory: factory)
            fsync = CoreMetrics.Timer(label: "breakglass_audit_fsync_seconds", factory: factory)
        }
    }

    /// What recovery did when the log was opened.
    public private(set) var recoveredBytes = 0
    /// Where start-up resumed from the saved state (nil after a full scan), and the root there.
    private var resumedAt: ResumePoint?
    private var resumedRoot: MerkleTree.Hash?

    private init(directory: String, origin: String, signer: NoteSigner, options: AuditLogOptions, logger: Logger) {
        self.directory = directory
        self.origin = origin
        self.signer = signer
        self.options = options
        self.logger = logger
        self.hook = CheckpointHook(options.checkpointHook)
        self.meters = options.metrics.map(Meters.init)
        self.intake = AuditIntake(maximumPending: options.maximumPending)
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
        let log = AuditLog(directory: directory, origin: origin, signer: signer, options: options, logger: logger)
        try log.recover()
        log.marks = [TreeMark(time: Date(), tree: log.tree, segment: log.segmentIndex, offset: log.segmentEnd)]
        let thread = Thread { log.writerLoop() }
        thread.name = "breakglass-audit-writer"
        thread.start()
        if let resumed = log.resumedAt {
            // The start path trusted the saved state; the records before it are re-checked (frames,
            // sequence, root against the checkpoint) in the background, and any damage stops the log.
            Thread.detachNewThread {
                do {
                    var tree = AppendOnlyTree()
                    _ = try AuditLogReader.scan(
                        directory: log.directory, until: resumed, decode: false,
                        subtrees: AuditLogReader.SubtreeMode(gateway: log.origin, cuts: []),
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
                    guard tree.root == log.resumedRoot else {
                        throw AuditLogError(
                            .corrupt, "the first \(resumed.sequence) records do not match the latest signed checkpoint: the log was altered"
                        )
                    }
                    log.logger.info("audit log: background check of \(tree.size) records passed")
                } catch let error as AuditLogError {
                    log.stop(error)
                } catch {
                    log.stop(AuditLogError(.corrupt, "\(error)"))
                }
            }
        }
        if log.recoveredBytes > 0 {
            log.enqueueDetached(
                AuditEvent(kind: .auditRecovered, time: Date(), fields: ["truncated_bytes": .integer(Int64(log.recoveredBytes))])
            )
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
        let guess = nextQueued
        var frame: [UInt8] = []
        frame.reserveCapacity(SegmentFormat.frameHeaderSize + record.maximumCount)
        var leaf = Self.appendFrame(record, sequence: guess, to: &frame)
        // Unchecked: every path below resumes it exactly once (refused here, or queued and then
        // resumed by the writer, `stop` or the failure paths), and the check's allocation and
        // atomics would run for every record.
        return try await withUnsafeThrowingContinuation { continuation in
            condition.lock()
            if let refusal = intake.refusal(for: event.kind, reserved: reserved, queued: queue.count) {
                condition.unlock()
                continuation.resume(throwing: AuditUnavailableError(reason: refusal))
                return
            }
            let sequence = nextQueued
            if sequence != guess {
                frame.removeAll(keepingCapacity: true)
                leaf = Self.appendFrame(record, sequence: sequence, to: &frame)
            }
            nextQueued = sequence + 1
            queue.append(
                Pending(
                    payload: .prepared(record), framed: Framed(sequence: sequence, frame: frame, leaf: leaf), continuation: continuation))
            awaitedQueued += 1
            if queue.count >= wakeAt || lingering { condition.signal() }
            condition.unlock()
        }
    }

    /// Whether an event of this kind would be queued now: false once the writer stopped, while closing,
    /// when the queue is full, or for access and denial events while the log writes into its reserve.
    public func accepts(_ kind: AuditEvent.Kind) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return intake.accepts(kind, queued: queue.count)
    }

    /// Takes a place in the queue for one later event of this kind; false when it would be refused now.
    public func reserve(_ kind: AuditEvent.Kind) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return intake.reserve(kind, queued: queue.count)
    }

    /// Gives back a place taken with `reserve` that no event will use.
    public func cancelReservation() {
        condition.lock()
        intake.cancelReservation()
        condition.unlock()
    }

    /// Queues an event without waiting; it joins the next group commit. If it cannot be written the
    /// log stops (and says why), so later `accepts` calls refuse.
    public func submit(_ event: AuditEvent) {
        submit(event, reserved: false)
    }

    /// `submit`, using a place taken with `reserve` when `reserved` is true.
    public func submit(_ event: AuditEvent, reserved: Bool) {
        condition.lock()
        defer { condition.unlock() }
        if let refusal = intake.refusal(for: event.kind, reserved: reserved, queued: queue.count) {
            logger.error("audit event not recorded", metadata: ["kind": "\(event.kind)", "reason": "\(refusal)"])
            return
        }
        nextQueued += 1
        queue.append(Pending(payload: .event(event), framed: nil, continuation: nil))
        if queue.count >= wakeAt { condition.signal() }
    }

    /// Signs and publishes a checkpoint covering everything durable now; returns the signed note.
    public func checkpoint() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if let stopped = intake.stopped {
                condition.unlock()
                continuation.resume(throwing: stopped)
                return
            }
            if intake.closing {
                // The writer may already have taken its last waiters; close signs the last checkpoint.
                condition.unlock()
                continuation.resume(throwing: AuditLogError(.writerStopped, "the audit log is closing"))
                return
            }
            checkpointWaiters.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    /// Writes what is queued, signs a last checkpoint and stops the writer.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if writerFinished {
                condition.unlock()
                continuation.resume()
                return
            }
            intake.close()
            writerDone = continuation
            condition.signal()
            condition.unlock()
        }
    }

    /// How the log is doing now: failed once the writer stopped, degraded in the reserve or with a warning.
    public var health: Health {
        condition.lock()
        defer { condition.unlock() }
        return intake.health
    }

    /// The latest checkpoint mark taken at or before `date`; nil when older than every kept mark.
    func mark(before date: Date) -> TreeMark? {
        condition.lock()
        defer { condition.unlock() }
        return marks.last(where: { $0.time <= date })
    }

    /// Takes one of the few places for proof work (reading segments back); false when all are taken.
    func beginProof() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard proofsRunning < Self.maximumProofs else { return false }
        proofsRunning += 1
        return true
    }

    func endProof() {
        condition.lock()
        proofsRunning -= 1
        condition.unlock()
    }

    /// The mark of the checkpoint of `size` records, when it is still kept.
    func mark(size: Int) -> TreeMark? {
        condition.lock()
        defer { condition.unlock() }
        return marks.last(where: { $0.tree.size == size })
    }

    /// Free bytes on the log's file system now, or nil when it cannot be read.
    public var freeBytes: Int? { FileIO.freeBytes(directory) }

    /// Number of durable records.
    public var size: Int {
        condition.lock()
        defer { condition.unlock() }
        return durableSize
    }

    // MARK: recovery

    private func recover() throws(AuditLogError) {
        try FileIO.makeDirectory(directory)
        try FileIO.makeDirectory(AuditLogReader.segmentsFolder(directory))
        var latest: Checkpoint?
        if let text = try AuditLogReader.latestCheckpoint(directory: directory) {
            guard let note = SignedNote(text: text), let checkpoint = Checkpoint(body: note.body) else {
                throw AuditLogError(.badCheckpoint, "\(directory)/checkpoint is not a signed checkpoint")
            }
            guard note.isSigned(by: signer.verifier), checkpoint.origin == origin else {
                throw AuditLogError(
                    .badCheckpoint, "\(directory)/checkpoint is not signed by this log's key (\(signer.verifier.keyString))")
            }
            latest = checkpoint
        }
        // Fast path: the saved state matches the latest checkpoint, so only later records are read.
        var resume: ResumePoint?
        if let latest, let state = AuditTreeState.load(directory), state.size == latest.size, let saved = state.tree,
            saved.root == latest.root
        {
            tree = saved
            resume = ResumePoint(sequence: state.size, segment: state.segment, offset: state.offset)
            resumedAt = resume
            resumedRoot = saved.root
        }
        var rootAtCheckpoint: MerkleTree.Hash? = resume == nil && latest?.size == 0 ? MerkleTree.emptyRoot : nil
        let origin = origin
        var tree = tree
        let contents = try AuditLogReader.scan(
            directory: directory,
            resumingAt: resume,
            decode: false,
            checkpointSize: latest?.size ?? 0,
            hashLeaves: true
        ) { visit throws(AuditLogError) in
            guard visit.gateway == origin else {
                throw AuditLogError(
                    .corrupt,
                    "segment \(visit.segment) offset \(visit.offset): record \(visit.sequence) belongs to log \(visit.gateway), not \(origin)"
                )
            }
            tree.append(leaf: visit.leaf ?? TreeHash.leaf(visit.payload))
            if resume == nil, tree.size == latest?.size { rootAtCheckpoint = tree.root }
        }
        self.tree = tree
        if let latest {
            guard latest.size <= tree.size else {
                throw AuditLogError(
                    .rollback,
                    "the log holds \(tree.size) records but its latest checkpoint covers \(latest.size): records were lost (rollback or truncation)"
                )
            }
            if resume == nil {
                guard rootAtCheckpoint == latest.root else {
                    throw AuditLogError(
                        .corrupt, "the first \(latest.size) records do not match the latest signed checkpoint: the log was altered")
                }
            }
            lastCheckpointSize = latest.size
        }
        logger.info(
            "audit log recovery", metadata: ["resumed_at": "\(resume?.sequence ?? 0)", "records_read": "\(contents.records)"])
        let segments = AuditLogReader.segmentsFolder(directory)
        if let last = contents.lastSegment {
            segmentIndex = last.index
            let path = segments + "/" + SegmentFormat.fileName(index: last.index)
            segmentFD = FileIO.openFile(path, O_RDWR | O_CLOEXEC)
            guard segmentFD >= 0 else { throw FileIO.failure("cannot open", path) }
            segmentEnd = last.end
            if let torn = contents.tornTail {
                try FileIO.write(segmentFD, [UInt8](repeating: 0, count: torn.bytes), at: torn.offset, path: path)
                try FileIO.syncData(segmentFD, path: path)
                recoveredBytes = torn.bytes
                logger.warning(
                    "audit log: torn tail cleared",
                    metadata: ["segment": "\(torn.segment)", "offset": "\(torn.offset)", "bytes": "\(torn.bytes)"]
                )
            }
        } else {
            try startSegment(index: 1, firstSequence: 0)
        }
        let historyPath = directory + "/checkpoints.log"
        historyFD = FileIO.openFile(historyPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard historyFD >= 0 else { throw FileIO.failure("cannot open", historyPath) }
        try FileIO.syncDirectory(directory)
        try FileIO.replaceAtomically(directory + "/audit-key.pub", with: Array((signer.verifier.keyString + "\n").utf8))
        durableSize = tree.size
        nextQueued = tree.size
        startZeroing()
        logger.notice("audit log open", metadata: ["directory": "\(directory)", "records": "\(tree.size)", "segment": "\(segmentIndex)"])
    }

    /// Creates, preallocates and syncs a new segment, then syncs the folder.
    private func startSegment(index: Int, firstSequence: Int) throws(AuditLogError) {
        let folder = AuditLogReader.segmentsFolder(directory)
        let path = folder + "/" + SegmentFormat.fileName(index: index)
        let fd = FileIO.openFile(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.failure("cannot create segment", path) }
        let allocated = posix_fallocate(fd, 0, off_t(options.segmentSize))
        guard allocated == 0 || allocated == EOPNOTSUPP || allocated == EINVAL else {
            FileIO.closeFile(fd)
            unlink(path)
            errno = allocated
            throw FileIO.failure("cannot preallocate segment", path)
        }
        do throws(AuditLogError) {
            try FileIO.write(fd, SegmentFormat.header(firstSequence: firstSequence), at: 0, path: path)
            guard fsync(fd) == 0 else { throw FileIO.failure("cannot flush", path) }
            try FileIO.syncDirectory(folder)
        } catch {
            FileIO.closeFile(fd)
            throw error
        }
        zeroer?.cancel()
        if segmentFD >= 0 { FileIO.closeFile(segmentFD) }
        segmentFD = fd
        segmentIndex = index
        segmentEnd = SegmentFormat.headerSize
        if let free = FileIO.freeBytes(folder), free < options.warnFreeBytes {
            setWarning("only \(free >> 20) MiB free for the audit log")
        }
    }

    // MARK: writer thread

    private func writerLoop() {
        while true {
            condition.lock()
            // A stopped log signs nothing more: it waits for appends to refuse, waiters or close.
            while queue.isEmpty && checkpointWaiters.isEmpty && !intake.closing && (intake.stopped != nil || !checkpointDue()) {
                wakeAt = 1
                if intake.stopped == nil, durableSize > lastCheckpointSize {
                    _ = condition.wait(until: SpinningCondition.deadline(after: Self.seconds(options.checkpointInterval)))
                } else {
                    condition.wait()
                }
            }
            if !intake.closing, awaitedQueued == 0, checkpointWaiters.isEmpty, queue.count < Self.lingerBatch, (options.submitDelay > .zero)
            {
                // Nobody waits for these records yet (proxied requests' records): let more join them.
                lingering = true
                wakeAt = Self.lingerBatch
                let deadline = SpinningCondition.deadline(after: Self.seconds(options.submitDelay))
                while !intake.closing, awaitedQueued == 0, checkpointWaiters.isEmpty, queue.count < Self.lingerBatch,
                    condition.wait(until: deadline)
                {}
                lingering = false
            }
            // Group commit: when fewer events wait than the last batch held, the callers of that batch
            // are probably still coming back; give them a moment so that one flush serves them all.
            let target = lastBatchSize * 3 / 4
            if !intake.closing, awaitedQueued > 0, queue.count < target {
                wakeAt = target
                let deadline = SpinningCondition.deadline(after: Self.gatherWindow)
                while !intake.closing, queue.count < target, condition.wait(until: deadline) {}
            }
            wakeAt = Int.max
            // Events refused or dropped in earlier batches shift the numbers of those queued after
            // them; from here on they are right again (the queued ones are framed anew).
            nextQueued = tree.size + queue.count
            let batch: [Pending]
            if queue.count <= options.maximumBatch {
                // The whole queue: handed over without copying its items under the lock.
                batch = queue
                queue = []
                queue.reserveCapacity(batch.count)
                awaitedQueued = 0
            } else {
                batch = Array(queue.prefix(options.maximumBatch))
                queue.removeFirst(batch.count)
                awaitedQueued -= batch.reduce(0) { $0 + ($1.continuation == nil ? 0 : 1) }
            }
            lastBatchSize = batch.count
            let waiters = checkpointWaiters
            checkpointWaiters = []
            let finishing = intake.closing && queue.isEmpty
            let failure = intake.stopped
            condition.unlock()

            if let failure {
                for pending in batch { pending.continuation?.resume(throwing: AuditUnavailableError(reason: failure.message)) }
                for waiter in waiters { waiter.resume(throwing: failure) }
                if finishing { break } else { continue }
            }
            do {
                try write(batch)
                if !finishing, !waiters.isEmpty, tree.size == lastCheckpointSize, let note = lastNote {
                    // Nothing new since the last checkpoint: it is the answer (no new signature, no
                    // new line in the history for callers that ask again and again).
                    for waiter in waiters { waiter.resume(returning: note) }
                } else if !waiters.isEmpty || finishing || checkpointDue() {
                    let note = try publishCheckpoint()
                    for waiter in waiters { waiter.resume(returning: note) }
                }
            } catch {
                stop(error)
                for waiter in waiters { waiter.resume(throwing: error) }
            }
            if finishing { break }
        }
        zeroer?.cancel()
        if segmentFD >= 0 { FileIO.closeFile(segmentFD) }
        if historyFD >= 0 { FileIO.closeFile(historyFD) }
        condition.lock()
        writerFinished = true
        let done = writerDone
        writerDone = nil
        condition.unlock()
        done?.resume()
    }

    private func checkpointDue() -> Bool {
        durableSize > lastCheckpointSize && lastCheckpointTime.duration(to: .now) >= options.checkpointInterval
    }

    /// Records framed for one write, with their leaf hashes and the callers waiting for them.
    private struct Chunk {
        var frames: [UInt8] = []
        var leaves: [TreeHash] = []
        var waiting: [UnsafeContinuation<Int, any Error>?] = []
    }

    /// Gathers a batch's frames into write buffers (the frames callers made, while their numbers
    /// hold, or frames encoded here), and writes and flushes it in chunks of at most `maximumWrite`
    /// bytes, so that an interrupted write never leaves more damage than recovery treats as a torn
    /// tail. Each chunk's callers resume once it is flushed.
    private func write(_ batch: [Pending]) throws(AuditLogError) {
        var chunk = Chunk()
        chunk.frames.reserveCapacity(min(Self.maximumWrite, batch.count * 512))
        /// Flushes the chunk first when `size` more bytes would not fit in one write; false when
        /// the chunk (and the rest of the batch) was refused.
        func makeRoom(_ size: Int, before index: Int) throws(AuditLogError) -> Bool {
            guard !chunk.leaves.isEmpty, chunk.frames.count + size > Self.maximumWrite else { return true }
            guard try flush(chunk, rest: batch[index...]) else { return false }
            chunk.frames.removeAll(keepingCapacity: true)
            chunk.leaves.removeAll(keepingCapacity: true)
            chunk.waiting.removeAll(keepingCapacity: true)
            return true
        }
        for index in batch.indices {
            if let framed = batch[index].framed, framed.sequence == tree.size + chunk.leaves.count {
                guard try makeRoom(framed.frame.count, before: index) else { return }
                chunk.frames.append(contentsOf: framed.frame)
                chunk.leaves.append(framed.leaf)
            } else {
                let record: AuditRecord.Prepared
                switch batch[index].payload {
                case .prepared(let prepared):
                    record = prepared
                case .event(let event):
                    do {
                        record = try AuditRecord.prepare(gateway: origin, event: event)
                    } catch {
                        logger.error("audit event not recorded", metadata: ["kind": "\(event.kind)", "reason": "\(error.message)"])
                        continue
                    }
                }
                guard try makeRoom(SegmentFormat.frameHeaderSize + record.maximumCount, before: index) else { return }
                chunk.leaves.append(Self.appendFrame(record, sequence: tree.size + chunk.leaves.count, to: &chunk.frames))
            }
            chunk.waiting.append(batch[index].continuation)
        }
        if !chunk.leaves.isEmpty { _ = try flush(chunk, rest: []) }
    }

    /// Appends the record's frame for `sequence` and returns its leaf hash.
    private static func appendFrame(_ record: AuditRecord.Prepared, sequence: Int, to frames: inout [UInt8]) -> TreeHash {
        let payload = SegmentFormat.appendFrame(to: &frames) { record.append(sequence: sequence, to: &$0) }
        return frames.withUnsafeBytes { TreeHash.leaf(UnsafeRawBufferPointer(rebasing: $0[payload])) }
    }

    /// Writes and flushes one chunk, adds its records to the tree and resumes their callers. When no
    /// segment can be made for it (disk full) it is refused with `rest`, the records of the batch not
    /// yet framed, and the result is false; the writer carries on, and a later batch writes again
    /// once a segment can be made. Any other failure stops the log.
    private func flush(_ chunk: Chunk, rest: ArraySlice<Pending>) throws(AuditLogError) -> Bool {
        do {
            if segmentEnd + chunk.frames.count > options.segmentSize - options.reserve {
                try rotate(firstSequence: tree.size, needed: chunk.frames.count)
            }
            let path = AuditLogReader.segmentsFolder(directory) + "/" + SegmentFormat.fileName(index: segmentIndex)
            zeroer?.waitUntilZeroed(through: segmentEnd + chunk.frames.count)
            try FileIO.write(segmentFD, chunk.frames, at: segmentEnd, path: path)
            let syncStart = ContinuousClock.now
            try FileIO.syncData(segmentFD, path: path)
            if let meters {
                meters.fsync.recordNanoseconds(syncStart.duration(to: .now).totalNanoseconds)
                meters.appends.increment(by: chunk.leaves.count)
                meters.batch.record(chunk.leaves.count)
            }
        } catch {
            // Records of a failed write may be on disk but are not acknowledged; recovery keeps
            // them. The log is marked stopped before any caller hears of the failure.
            if error.code != .full { stop(error) }
            let refusal = AuditUnavailableError(reason: error.message)
            for waiting in chunk.waiting { waiting?.resume(throwing: refusal) }
            for pending in rest { pending.continuation?.resume(throwing: refusal) }
            if error.code == .full { return false }
            throw error
        }
        segmentEnd += chunk.frames.count
        let first = tree.size
        for leaf in chunk.leaves { tree.append(leaf: leaf) }
        condition.lock()
        durableSize = tree.size
        condition.unlock()
        for (offset, waiting) in chunk.waiting.enumerated() { waiting?.resume(returning: first + offset) }
        return true
    }

    /// Zero-fills the rest of the current segment file (as far as it is allocated) ahead of the writer.
    private func startZeroing() {
        var status = stat()
        guard fstat(segmentFD, &status) == 0 else { return }
        let path = AuditLogReader.segmentsFolder(directory) + "/" + SegmentFormat.fileName(index: segmentIndex)
        zeroer = SegmentZeroer(fd: segmentFD, path: path, from: segmentEnd, to: Int(status.st_size), logger: logger)
    }

    /// Moves to a new segment; when none can be made, carries on in the current one's reserve.
    private func rotate(firstSequence: Int, needed: Int) throws(AuditLogError) {
        do {
            try startSegment(index: segmentIndex + 1, firstSequence: firstSequence)
            startZeroing()
            condition.lock()
            intake.leaveReserve()
            condition.unlock()
        } catch {
            guard segmentEnd + needed <= options.segmentSize else {
                throw AuditLogError(.full, "the audit disk is full and its reserve is used up (\(error.message))")
            }
            condition.lock()
            let entering = intake.enterReserve()
            condition.unlock()
            if entering { logger.critical("audit log: no space for a new segment; using the reserve", metadata: ["error": "\(error)"]) }
        }
    }

    /// Signs a checkpoint of the current tree, appends it to the history, replaces `checkpoint`
    /// atomically and copies it to every mirror and the hook.
    private func publishCheckpoint() throws(AuditLogError) -> String {
        let checkpoint = Checkpoint(origin: origin, size: tree.size, root: tree.root)
        let note: String
        do {
            note = try signer.sign(checkpoint.body)
        } catch {
            throw AuditLogError(.key, "cannot sign a checkpoint: \(error)")
        }
        let bytes = Array(note.utf8)
        let historyPath = directory + "/checkpoints.log"
        let frame = SegmentFormat.frame(bytes)
        try FileIO.append(historyFD, frame, path: historyPath)
        try FileIO.syncData(historyFD, path: historyPath)
        try AuditTreeState(tree: tree, segment: segmentIndex, offset: segmentEnd).save(directory)
        try FileIO.replaceAtomically(directory + "/checkpoint", with: bytes)
        lastCheckpointSize = checkpoint.size
        lastCheckpointTime = .now
        lastNote = note
        let mark = TreeMark(time: Date(), tree: tree, segment: segmentIndex, offset: segmentEnd)
        condition.lock()
        if marks.count >= Self.maximumMarks {
            // Thin the older half (every other mark goes), so that the marks kept reach further back
            // in time the longer the log runs, instead of covering only the latest stretch.
            let half = marks.count / 2
            marks = marks[..<half].enumerated().filter { $0.offset.isMultiple(of: 2) }.map(\.element) + marks[half...]
        }
        marks.append(mark)
        condition.unlock()
        for mirror in options.mirrors {
            do {
                try FileIO.makeDirectory(mirror)
                try FileIO.replaceAtomically(mirror + "/checkpoint", with: bytes)
            } catch {
                logger.error("audit mirror failed", metadata: ["mirror": "\(mirror)", "error": "\(error)"])
                setWarning("mirror \(mirror) failed: \(error.message)")
            }
        }
        hook?.run(note: note, logger: logger)
        return note
    }

    private func stop(_ error: AuditLogError) {
        condition.lock()
        let first = intake.stop(error)
        let drained = queue
        queue = []
        awaitedQueued = 0
        condition.unlock()
        if first { logger.critical("audit log stopped: no more access will be granted", metadata: ["error": "\(error.message)"]) }
        for pending in drained { pending.continuation?.resume(throwing: AuditUnavailableError(reason: error.message)) }
    }

    private func setWarning(_ text: String) {
        condition.lock()
        intake.warn(text)
        condition.unlock()
        logger.warning("audit log degraded", metadata: ["reason": "\(text)"])
    }

    private func enqueueDetached(_ event: AuditEvent) {
        Task { try? await self.record(event) }
    }

    /// Longest a batch waits for more events (seconds): a fraction of one fdatasync.
    static let gatherWindow: TimeInterval = 0.001
    /// Enough submitted events to write at once without waiting for more.
    static let lingerBatch = 256

    /// Largest single write; half the reader's torn-tail limit.
    static let maximumWrite = AuditLogReader.tornTailLimit / 2

    static func seconds(_ duration: Duration) -> TimeInterval {
        TimeInterval(duration.components.seconds) + TimeInterval(duration.components.attoseconds) / 1e18
    }
}
