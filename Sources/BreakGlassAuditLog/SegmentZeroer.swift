import BreakGlassAuditFormat
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes zeros over the preallocated, never-written rest of a segment, a little ahead of the
/// writer, on a thread of its own, and flushes them.
///
/// Space from `posix_fallocate` is allocated but marked unwritten (ext4, XFS): the first flush of
/// data written into it must also convert the extents and commit the file system's journal, which
/// here nearly doubles the latency of every fdatasync of the log. Once the zeros are written and
/// flushed, a flush carries only data. (PostgreSQL zero-fills new WAL files for the same reason.)
/// Zeros are what the format expects past the last record, so this changes nothing a reader sees.
///
/// The writer calls `waitUntilZeroed(through:)` before each write, and the two never write the same
/// bytes: the zeroer writes only at or past `zeroedEnd`, the writer only below it, or anywhere once
/// the zeroer has stopped. A zeroer that fails only stops; the writer then writes into unwritten
/// space as it would without one.
final class SegmentZeroer: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var zeroedEnd: Int
    private var writerEnd: Int
    private var running = true
    private var cancelled = false

    private let fd: Int32
    private let path: String
    private let end: Int
    private let logger: Logger

    /// How far ahead of the writer zeros are kept: far enough that the writer never waits, near
    /// enough that the zeroing is spread over the segment's life instead of being one burst.
    static let lead = 4 << 20
    /// Bytes zeroed (and flushed) at a time; the first piece is small so that the writer of a new
    /// segment waits as little as possible.
    static let piece = 1 << 20
    static let firstPiece = 256 << 10

    /// Starts zeroing `fd` (the segment at `path`) from `start` to `end`; `start` is where the
    /// writer will write next.
    init(fd: Int32, path: String, from start: Int, to end: Int, logger: Logger) {
        self.fd = fd
        self.path = path
        self.end = end
        self.logger = logger
        zeroedEnd = start
        writerEnd = start
        guard start < end else {
            running = false
            return
        }
        let thread = Thread { [self] in run() }
        thread.name = "breakglass-audit-zero"
        thread.start()
    }

    /// Returns once the writer may write below `offset`: the zeros there are written and flushed,
    /// or the zeroer has stopped.
    func waitUntilZeroed(through offset: Int) {
        condition.lock()
        defer { condition.unlock() }
        if offset > writerEnd {
            writerEnd = offset
            if zeroedEnd < writerEnd + Self.lead { condition.broadcast() }
        }
        while running && zeroedEnd < offset { condition.wait() }
    }

    /// Stops zeroing and returns once the zeroer no longer uses the file (it may then be closed).
    func cancel() {
        condition.lock()
        defer { condition.unlock() }
        cancelled = true
        condition.broadcast()
        while running { condition.wait() }
    }

    private func run() {
        let zeros = [UInt8](repeating: 0, count: Self.piece)
        var size = Self.firstPiece
        while true {
            condition.lock()
            while !cancelled && zeroedEnd >= writerEnd + Self.lead { condition.wait() }
            let start = zeroedEnd
            let stop = cancelled || start >= end
            condition.unlock()
            if stop { break }
            let count = min(size, end - start)
            do {
                try FileIO.write(fd, count == zeros.count ? zeros : Array(zeros[..<count]), at: start, path: path)
                try FileIO.syncData(fd, path: path)
            } catch {
                logger.notice("audit log: segment not zeroed ahead", metadata: ["error": "\(error.message)"])
                break
            }
            condition.lock()
            zeroedEnd = start + count
            condition.broadcast()
            condition.unlock()
            size = Self.piece
        }
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }
}
