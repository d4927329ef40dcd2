/// Where the gateway records what happened. `record` returns only once the event is durable.
///
/// Implementations throw when the event cannot be recorded; callers then fail closed (no audit, no access).
public protocol AuditSink: Sendable {
    func record(_ event: AuditEvent) async throws

    /// Whether an event of this kind would be accepted now; access is refused before it is given
    /// when not (no audit, no access).
    func accepts(_ kind: AuditEvent.Kind) -> Bool

    /// Records an event without waiting for it to be durable (per-request events). A sink that
    /// cannot write it stops accepting events, so that later access is refused.
    func submit(_ event: AuditEvent)
}

extension AuditSink {
    public func accepts(_ kind: AuditEvent.Kind) -> Bool { true }

    public func submit(_ event: AuditEvent) {
        Task { try? await record(event) }
    }
}

/// Thrown by an audit sink that cannot record.
public struct AuditUnavailableError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "audit unavailable: \(reason)" }
}
