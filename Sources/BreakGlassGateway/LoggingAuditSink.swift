import BreakGlassCore
import Logging

/// An audit sink that writes each event as a structured log line. It keeps no durable record.
public struct LoggingAuditSink: AuditSink {
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    public func record(_ event: AuditEvent) async throws {
        var metadata: Logger.Metadata = ["audit.event": "\(event.kind)", "audit.time": "\(AuditValue.time(event.time))"]
        for (key, value) in event.fields { metadata["audit.\(key)"] = "\(Self.escaped("\(value)"))" }
        logger.notice("audit", metadata: metadata)
    }

    /// Control characters escaped, so that a field cannot start a forged log line.
    static func escaped(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
