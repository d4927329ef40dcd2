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
final class SegmentZeroer: Sendable {
    /// How far the zeros and the writer have come.
    private struct Progress {
        var zeroedEnd: Int
        var writerEnd: Int
        var running: Bool
        var cancelled = false
    }

    /// Two threads wait on it, the writer and the zeroer, and each signals only the other.
    private let progress: SpinningCondition<Progress>
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
        progress = SpinningCondition(Progress(zeroedEnd: start, writerEnd: start, running: start < end))
        guard start < end else { return }
        let thread = Thread { [self] in run() }
        thread.name = "breakglass-audit-zero"
        thread.start()
    }

    /// Returns once the writer may write below `offset`: the zeros there are written and flushed,
    /// or the zeroer has stopped.
    func waitUntilZeroed(through offset: Int) {
        let progress = progress
        progress.wait { state in
            if offset > state.writerEnd {
                state.writerEnd = offset
                if state.zeroedEnd < state.writerEnd + Self.lead { progress.signal() }
            }
            return state.running && state.zeroedEnd < offset ? .wait(nil) : .done(())
        }
    }

    /// Stops zeroing and returns once the zeroer no longer uses the file (it may then be closed).
    func cancel() {
        let progress = progress
        progress.wait { state in
            if !state.cancelled {
                state.cancelled = true
                progress.signal()
            }
            return state.running ? .wait(nil) : .done(())
        }
    }

    private func run() {
        let zeros = [UInt8](repeating: 0, count: Self.piece)
        var size = Self.firstPiece
        let end = end
        while true {
            // Where to zero next, once the writer has come near enough; nil: stop.
            let next: Int? = progress.wait { state in
                if state.cancelled { return .done(nil) }
                if state.zeroedEnd >= state.writerEnd + Self.lead { return .wait(nil) }
                return .done(state.zeroedEnd < end ? state.zeroedEnd : nil)
            }
            guard let start = next else { break }
            let count = min(size, end - start)
            do {
                try FileIO.write(fd, count == zeros.count ? zeros : Array(zeros[..<count]), at: start, path: path)
                try FileIO.syncData(fd, path: path)
            } catch {
                logger.notice("audit log: segment not zeroed ahead", metadata: ["error": "\(error.message)"])
                break
            }
            progress.withLock { $0.zeroedEnd = start + count }
            progress.signal()
            size = Self.piece
        }
        progress.withLock { $0.running = false }
        progress.signal()
    }
}
