import BreakGlassCore
import Synchronization

/// An audit sink that keeps events in memory and can be told to fail, for tests. Like the durable
/// log, a failing sink refuses new events but honours places reserved before it failed.
public final class MemoryAuditSink: AuditSink {
    private struct State {
        var events: [AuditEvent] = []
        var failing = false
        var reservations = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func record(_ event: AuditEvent) async throws {
        try await record(event, reserved: false)
    }

    public func record(_ event: AuditEvent, reserved: Bool) async throws {
        try state.withLock {
            if reserved { $0.reservations -= 1 }
            if $0.failing && !reserved { throw AuditUnavailableError(reason: "test sink told to fail") }
            $0.events.append(event)
        }
    }

    public func accepts(_ kind: AuditEvent.Kind) -> Bool {
        state.withLock { !$0.failing }
    }

    public func reserve(_ kind: AuditEvent.Kind) -> Bool {
        state.withLock {
            guard !$0.failing else { return false }
            $0.reservations += 1
            return true
        }
    }

    public func cancelReservation() {
        state.withLock { $0.reservations -= 1 }
    }

    public func submit(_ event: AuditEvent) {
        submit(event, reserved: false)
    }

    public func submit(_ event: AuditEvent, reserved: Bool) {
        state.withLock {
            if reserved { $0.reservations -= 1 }
            if !$0.failing || reserved { $0.events.append(event) }
        }
    }

    /// Makes every later `record` throw (or succeed again).
    public func setFailing(_ failing: Bool) {
        state.withLock { $0.failing = failing }
    }

    public var events: [AuditEvent] { state.withLock { $0.events } }

    /// Places reserved and not yet used or given back (zero once every exchange has ended).
    public var openReservations: Int { state.withLock { $0.reservations } }

    public func events(_ kind: AuditEvent.Kind) -> [AuditEvent] { events.filter { $0.kind == kind } }
}
