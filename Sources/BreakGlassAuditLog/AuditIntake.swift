import BreakGlassAuditFormat
import BreakGlassCore

/// What the audit log takes in, as a value: whether an event may join the queue now, the places
/// reserved for later events, and the log's condition (stopped, closing, writing into its reserve,
/// degraded). `AuditLog` keeps it under its lock and asks it before every queue change, so every
/// refusal is decided here and tested with plain values.
struct AuditIntake {
    /// Why the writer stopped; the log then refuses everything.
    private(set) var stopped: AuditLogError?
    /// `close` was called: nothing more is taken.
    private(set) var closing = false
    /// No new segment could be made: the log writes into the current one's reserve, which is kept
    /// for the ends of sessions and for alarms.
    private(set) var inReserve = false
    /// Why the log is degraded while still writing (a mirror failed, say).
    private(set) var warning: String?
    /// Places taken with `reserve` for events not queued yet; they count against `maximumPending`.
    private(set) var reservations = 0
    /// The most events queued and reserved at once.
    let maximumPending: Int

    init(maximumPending: Int) {
        self.maximumPending = maximumPending
    }

    /// Why an event of this kind cannot join a queue of `queued` events now, or nil. A `reserved`
    /// event uses its place (given back either way) and is refused only when the log cannot write.
    mutating func refusal(for kind: AuditEvent.Kind, reserved: Bool, queued: Int) -> String? {
        if reserved { reservations = max(0, reservations - 1) }
        if let stopped { return stopped.message }
        if closing { return "the audit log is closing" }
        if reserved { return nil }
        if inReserve && Self.needsSpace(kind) { return "the audit disk is full; only session ends and alarms are recorded" }
        guard queued + reservations < maximumPending else {
            return "the audit writer is behind (\(queued) events waiting)"
        }
        return nil
    }

    /// Whether an event of this kind would join a queue of `queued` events now.
    func accepts(_ kind: AuditEvent.Kind, queued: Int) -> Bool {
        var asked = self
        return asked.refusal(for: kind, reserved: false, queued: queued) == nil
    }

    /// Takes a place for one later event of this kind; false when it would be refused now.
    mutating func reserve(_ kind: AuditEvent.Kind, queued: Int) -> Bool {
        guard refusal(for: kind, reserved: false, queued: queued) == nil else { return false }
        reservations += 1
        return true
    }

    /// Gives back a place that no event will use.
    mutating func cancelReservation() {
        reservations = max(0, reservations - 1)
    }

    /// The writer stopped; true the first time (later errors do not replace the first).
    mutating func stop(_ error: AuditLogError) -> Bool {
        guard stopped == nil else { return false }
        stopped = error
        return true
    }

    mutating func close() {
        closing = true
    }

    /// The log writes into its reserve; true when it was not already.
    mutating func enterReserve() -> Bool {
        defer { inReserve = true }
        return !inReserve
    }

    mutating func leaveReserve() {
        inReserve = false
    }

    mutating func warn(_ text: String) {
        warning = text
    }

    /// How the log is doing: failed once stopped, degraded in the reserve or with a warning.
    var health: AuditLog.Health {
        if let stopped { return .failed(stopped.message) }
        if inReserve { return .degraded("the audit disk is full: grants and access are refused; session ends still recorded") }
        if let warning { return .degraded(warning) }
        return .ok
    }

    /// Events that need free space beyond the reserve: everything that gives access, and refusals,
    /// which anyone can cause (the reserve keeps room for the ends of sessions and for alarms).
    static func needsSpace(_ kind: AuditEvent.Kind) -> Bool {
        kind == .grantIssued || kind == .request || kind == .tunnelOpened || kind == .grantDenied || kind == .requestDenied
    }
}
