import Foundation

/// Reads and scans the segments of a folder one step ahead of their consumer, on its own thread,
/// so that reading and checking segment k+1 overlaps with the serial work on segment k.
///
/// At most `depth` scanned segments wait to be taken, which bounds memory. Results arrive in
/// order; after a failure nothing more is read.
final class SegmentPrefetcher: @unchecked Sendable {
    /// One segment to read: its file, the byte limit, where its frames start, and the work to do.
    struct Job: Sendable {
        var path: String
        var name: String
        var limit: Int?
        var start: Int
        var work: SegmentScan.Work
    }

    typealias Loaded = Result<(bytes: [UInt8], scan: SegmentScan), AuditLogError>

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var ready: [Loaded] = []
    private var cancelled = false
    private let depth: Int

    init(jobs: [Job], depth: Int = 1) {
        self.depth = depth
        Thread.detachNewThread { [self] in
            for job in jobs {
                let loaded = Self.load(job)
                condition.lock()
                while ready.count >= depth && !cancelled { condition.wait() }
                let stop = cancelled
                if !stop { ready.append(loaded) }
                condition.signal()
                condition.unlock()
                if stop { return }
                if case .failure = loaded { return }
            }
        }
    }

    /// Reads and scans one segment on the calling thread.
    static func load(_ job: Job) -> Loaded {
        Result { () throws(AuditLogError) in
            // Records before `start` were checked when they were written or at start-up: not read again.
            let gap = job.start > SegmentFormat.headerSize ? SegmentFormat.headerSize..<job.start : nil
            let bytes = try FileIO.read(job.path, upTo: job.limit, gap: gap)
            return (bytes, try SegmentScan.scan(bytes, name: job.name, from: job.start, work: job.work))
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

    /// Stops reading ahead (the consumer has stopped).
    func cancel() {
        condition.lock()
        cancelled = true
        ready.removeAll()
        condition.signal()
        condition.unlock()
    }
}
