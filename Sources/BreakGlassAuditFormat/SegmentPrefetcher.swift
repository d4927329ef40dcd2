import Foundation

/// Reads the segments of a folder one step ahead of their consumer, on its own thread, so that
/// reading segment k+1 (and finding its frames) overlaps with checking segment k on all cores.
///
/// At most `depth` read segments wait to be taken, and the consumer hands each buffer back when
/// it is done with it, so a scan of any length holds a few segments' worth of memory and reads
/// into pages that are already mapped. Results arrive in order; after a failure nothing more is read.
final class SegmentPrefetcher: @unchecked Sendable {
    /// One segment to read: its file, the byte limit, and where its frames start.
    struct Job: Sendable {
        var path: String
        var name: String
        var limit: Int?
        var start: Int
    }

    /// A segment's bytes, and the index of its frames made while they were read.
    typealias Loaded = Result<(bytes: [UInt8], index: SegmentScan.FrameIndex), AuditLogError>

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var ready: [Loaded] = []
    private var spare: [[UInt8]] = []
    private var cancelled = false
    private let depth: Int

    init(jobs: [Job], depth: Int = 1) {
        self.depth = depth
        Thread.detachNewThread { [self] in
            for job in jobs {
                // Room first, then a buffer: by then the consumer has handed back the one it finished.
                condition.lock()
                while ready.count >= depth && !cancelled { condition.wait() }
                var buffer = spare.popLast()
                let stop = cancelled
                condition.unlock()
                if stop { return }
                let loaded = Self.read(job, reusing: &buffer)
                condition.lock()
                if !cancelled { ready.append(loaded) }
                condition.signal()
                condition.unlock()
                if case .failure = loaded { return }
            }
        }
    }

    /// Reads one segment on the calling thread, into `buffer` (taken) when there is one, indexing
    /// its frames as the pieces arrive.
    static package func read(_ job: Job, reusing buffer: inout [UInt8]?) -> Loaded {
        // Records before `start` were checked when they were written or at start-up: not read again.
        let gap = job.start > SegmentFormat.headerSize ? SegmentFormat.headerSize..<job.start : nil
        var index = SegmentScan.FrameIndex(start: job.start)
        do {
            let bytes = try FileIO.read(job.path, upTo: job.limit, gap: gap, reusing: &buffer) { bytes, size in
                index.advance(bytes, segmentSize: size)
            }
            return .success((bytes, index))
        } catch {
            return .failure(error)
        }
    }

    /// The next segment, in order; waits for it.
    func next() -> Loaded {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty { condition.wait() }
        let loaded = ready.removeFirst()
        condition.signal()
        return loaded
    }

    /// Gives back a buffer from `next()` that the consumer no longer uses, to be read into again.
    func recycle(_ buffer: consuming [UInt8]) {
        condition.lock()
        if spare.count < 2 { spare.append(buffer) }
        condition.unlock()
    }

    /// Stops reading ahead (the consumer has stopped).
    func cancel() {
        condition.lock()
        cancelled = true
        ready.removeAll()
        spare.removeAll()
        condition.signal()
        condition.unlock()
    }
}
