/// Where the gateway records what happened. `record` returns only once the event is durable.
///
/// Implementations throw when the event cannot be recorded; callers then fail closed (no audit, no access).
public protocol AuditSink: Sendable {
    func record(_ event: AuditEvent) async throws
}

/// Thrown by an audit sink that cannot record.
public struct AuditUnavailableError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "audit unavailable: \(reason)" }
}
