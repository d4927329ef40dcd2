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

/// The audit writer thread: it asks the log's queue what to do next and does it (write and flush a
/// batch, sign a checkpoint, answer waiters), and owns what only it touches: the files, the tree, the
/// zeroer. It is made on its thread and never leaves it (not `Sendable`).
final class AuditWriter {
    private let log: AuditLog
    private var tree: AppendOnlyTree
    private var segmentIndex: Int
    private var segmentFD: Int32
    private var segmentEnd: Int
    /// Zero-fills the current segment ahead of the writer.
    private var zeroer: SegmentZeroer?
    private let historyFD: Int32
    private let hook: CheckpointHook?
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

    /// Records framed for one write, with their leaf hashes and the callers waiting for them.
    private struct Chunk {
        var frames: [UInt8] = []
        var leaves: [TreeHash] = []
        var waiting: [UnsafeContinuation<Int, any Error>?] = []
    }

    /// Largest single write; half the reader's torn-tail limit.
    static let maximumWrite = AuditLogReader.tornTailLimit / 2

    init(log: AuditLog, recovered: AuditRecovery) {
        self.log = log
        tree = recovered.tree
        segmentIndex = recovered.segmentIndex
        segmentFD = recovered.segmentFD
        segmentEnd = recovered.segmentEnd
        historyFD = recovered.historyFD
        hook = CheckpointHook(log.options.checkpointHook)
        meters = log.options.metrics.map(Meters.init)
    }

    /// Performs the queue's steps until it says finish, then closes the files and resumes `close`.
    func run() {
        startZeroing()
        let log = self.log
        let queue = log.queue
        performing: while true {
            let step: AuditLog.Queue.Step = queue.wait { state in
                let now = ContinuousClock.now
                let step = state.next(now: now)
                if case .wait(let until) = step { return .wait(until.map { now.duration(to: $0) }) }
                log.nextQueued.store(state.nextSequence, ordering: .relaxed)
                return .done(step)
            }
            switch step {
            case .wait:
                continue
            case .write(let batch):
                // A failure stops the log, which refuses everything queued since.
                do { try write(batch) } catch { log.stop(error) }
            case .publish(let waiters):
                do {
                    let note = try publishCheckpoint()
                    for waiter in waiters { waiter.resume(returning: note) }
                } catch {
                    log.stop(error)
                    for waiter in waiters { waiter.resume(throwing: error) }
                }
            case .answer(let waiters, let note):
                for waiter in waiters { waiter.resume(returning: note) }
            case .finish:
                break performing
            }
        }
        zeroer?.cancel()
        if segmentFD >= 0 { FileIO.closeFile(segmentFD) }
        if historyFD >= 0 { FileIO.closeFile(historyFD) }
        for closer in queue.withLock({ $0.writerFinished() }) { closer.resume() }
    }

    /// Gathers a batch's frames into write buffers (the frames callers made, while their numbers
    /// hold, or frames encoded here), and writes and flushes it in chunks of at most `maximumWrite`
    /// bytes, so that an interrupted write never leaves more damage than recovery treats as a torn
    /// tail. Each chunk's callers resume once it is flushed.
    private func write(_ batch: [AuditLog.Pending]) throws(AuditLogError) {
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
                        record = try AuditRecord.prepare(gateway: log.origin, event: event)
                    } catch {
                        log.logger.error("audit event not recorded", metadata: ["kind": "\(event.kind)", "reason": "\(error.message)"])
                        continue
                    }
                }
                guard try makeRoom(SegmentFormat.frameHeaderSize + record.maximumCount, before: index) else { return }
                chunk.leaves.append(AuditLog.appendFrame(record, sequence: tree.size + chunk.leaves.count, to: &chunk.frames))
            }
            chunk.waiting.append(batch[index].continuation)
        }
        if !chunk.leaves.isEmpty { _ = try flush(chunk, rest: []) }
    }

    /// Writes and flushes one chunk, adds its records to the tree and resumes their callers. When no
    /// segment can be made for it (disk full) it is refused with `rest`, the records of the batch not
    /// yet framed, and the result is false; the writer carries on, and a later batch writes again
    /// once a segment can be made. Any other failure stops the log.
    private func flush(_ chunk: Chunk, rest: ArraySlice<AuditLog.Pending>) throws(AuditLogError) -> Bool {
        let options = log.options
        do {
            if segmentEnd + chunk.frames.count > options.segmentSize - options.reserve {
                try rotate(firstSequence: tree.size, needed: chunk.frames.count)
            }
            let path = AuditLogReader.segmentsFolder(log.directory) + "/" + SegmentFormat.fileName(index: segmentIndex)
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
            if error.code != .full { log.stop(error) }
            let refusal = AuditUnavailableError(reason: error.message)
            for waiting in chunk.waiting { waiting?.resume(throwing: refusal) }
            for pending in rest { pending.continuation?.resume(throwing: refusal) }
            if error.code == .full { return false }
            throw error
        }
        segmentEnd += chunk.frames.count
        let first = tree.size
        for leaf in chunk.leaves { tree.append(leaf: leaf) }
        let size = tree.size
        log.queue.withLock { $0.durable(size) }
        for (offset, waiting) in chunk.waiting.enumerated() { waiting?.resume(returning: first + offset) }
        return true
    }

    /// Zero-fills the rest of the current segment file (as far as it is allocated) ahead of the writer.
    private func startZeroing() {
        var status = stat()
        guard fstat(segmentFD, &status) == 0 else { return }
        let path = AuditLogReader.segmentsFolder(log.directory) + "/" + SegmentFormat.fileName(index: segmentIndex)
        zeroer = SegmentZeroer(fd: segmentFD, path: path, from: segmentEnd, to: Int(status.st_size), logger: log.logger)
    }

    /// Moves to a new segment; when none can be made, carries on in the current one's reserve.
    private func rotate(firstSequence: Int, needed: Int) throws(AuditLogError) {
        let options = log.options
        do {
            let fd = try AuditRecovery.createSegment(
                directory: log.directory, index: segmentIndex + 1, firstSequence: firstSequence, size: options.segmentSize)
            zeroer?.cancel()
            if segmentFD >= 0 { FileIO.closeFile(segmentFD) }
            segmentFD = fd
            segmentIndex += 1
            segmentEnd = SegmentFormat.headerSize
            if let warning = AuditRecovery.spaceWarning(directory: log.directory, options: options) { log.setWarning(warning) }
            startZeroing()
            log.queue.withLock { $0.leaveReserve() }
        } catch {
            guard segmentEnd + needed <= options.segmentSize else {
                throw AuditLogError(.full, "the audit disk is full and its reserve is used up (\(error.message))")
            }
            let entering = log.queue.withLock { $0.enterReserve() }
            if entering {
                log.logger.critical("audit log: no space for a new segment; using the reserve", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Signs a checkpoint of the current tree, appends it to the history, replaces `checkpoint`
    /// atomically and copies it to every mirror and the hook.
    private func publishCheckpoint() throws(AuditLogError) -> String {
        let directory = log.directory
        let checkpoint = Checkpoint(origin: log.origin, size: tree.size, root: tree.root)
        let note: String
        do {
            note = try log.signer.sign(checkpoint.body)
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
        log.queue.withLock { $0.published(size: checkpoint.size, note: note, at: .now) }
        let mark = TreeMark(time: Date(), tree: tree, segment: segmentIndex, offset: segmentEnd)
        log.marks.withLock { $0.add(mark) }
        for mirror in log.options.mirrors {
            do {
                try FileIO.makeDirectory(mirror)
                try FileIO.replaceAtomically(mirror + "/checkpoint", with: bytes)
            } catch {
                log.logger.error("audit mirror failed", metadata: ["mirror": "\(mirror)", "error": "\(error)"])
                log.setWarning("mirror \(mirror) failed: \(error.message)")
            }
        }
        hook?.run(note: note, logger: log.logger)
        return note
    }
}
