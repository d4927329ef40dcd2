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

    /// Takes a place for one later event of this kind, or returns false when such an event would be
    /// refused now. Taken when access is given, so that the record of that access cannot be refused
    /// afterwards (queue full, disk reserve). Every place taken is used once, by `submit(_:reserved:)`
    /// or `record(_:reserved:)` with `reserved: true`, or given back with `cancelReservation()`.
    func reserve(_ kind: AuditEvent.Kind) -> Bool

    /// Gives back a place taken with `reserve` that no event will use.
    func cancelReservation()

    /// `submit`, using a place taken with `reserve` when `reserved` is true.
    func submit(_ event: AuditEvent, reserved: Bool)

    /// `record`, using a place taken with `reserve` when `reserved` is true.
    func record(_ event: AuditEvent, reserved: Bool) async throws
}

extension AuditSink {
    /// Accepts every event.
    public func accepts(_ kind: AuditEvent.Kind) -> Bool { true }

    /// Records the event in a new task; a failure is ignored.
    public func submit(_ event: AuditEvent) {
        Task { try? await record(event) }
    }

    /// Takes a place when `accepts` says the event would be accepted; nothing is held.
    public func reserve(_ kind: AuditEvent.Kind) -> Bool { accepts(kind) }

    /// Does nothing, as `reserve` holds nothing.
    public func cancelReservation() {}

    /// `submit`; the place taken is not tracked.
    public func submit(_ event: AuditEvent, reserved: Bool) { submit(event) }

    /// `record`; the place taken is not tracked.
    public func record(_ event: AuditEvent, reserved: Bool) async throws { try await record(event) }
}

/// Thrown by an audit sink that cannot record.
public struct AuditUnavailableError: Error, Sendable, CustomStringConvertible {
    /// Why the event cannot be recorded.
    public var reason: String
    /// An error saying why the audit sink cannot record.
    public init(reason: String) { self.reason = reason }
    /// The reason, after `audit unavailable:`.
    public var description: String { "audit unavailable: \(reason)" }
}
