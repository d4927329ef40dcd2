import Foundation
import Logging
import Synchronization

/// A test gateway's log: its lines are kept (the last `limit`) for tests to look at, not printed, so
/// that the refusals and failures tests provoke on purpose do not read as errors in a passing run.
/// `BREAKGLASS_TEST_LOG=1` prints them on stderr as well, for a test being debugged.
public final class TestLog: Sendable {
    /// Most lines kept.
    public static let limit = 2000

    private let kept = Mutex<[String]>([])
    private let echo = ProcessInfo.processInfo.environment["BREAKGLASS_TEST_LOG"].map { !$0.isEmpty && $0 != "0" } ?? false

    public init() {}

    /// The lines kept, oldest first: `LEVEL LABEL: MESSAGE key=value…`.
    public var lines: [String] { kept.withLock { $0 } }

    /// Whether a kept line contains `text`.
    public func contains(_ text: String) -> Bool {
        kept.withLock { $0.contains { $0.contains(text) } }
    }

    func append(_ line: String) {
        kept.withLock { lines in
            if lines.count >= Self.limit { lines.removeFirst(lines.count - Self.limit + 1) }
            lines.append(line)
        }
        if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
    }

    /// A logger that writes here.
    public func logger(label: String, level: Logger.Level = .warning) -> Logger {
        var logger = Logger(label: label) { label in TestLogHandler(label: label, log: self) }
        logger.logLevel = level
        return logger
    }
}

/// Writes a test's log lines into a `TestLog`.
struct TestLogHandler: LogHandler {
    let label: String
    let log: TestLog
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        log.append("\(event.level) \(label): \(event.message)\(fields.isEmpty ? "" : " " + fields)")
    }
}
