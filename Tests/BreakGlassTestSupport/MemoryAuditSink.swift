import BreakGlassCore
import Synchronization

/// An audit sink that keeps events in memory and can be told to fail, for tests.
public final class MemoryAuditSink: AuditSink {
    private let state = Mutex<(events: [AuditEvent], failing: Bool)>(([], false))

    public init() {}

    public func record(_ event: AuditEvent) async throws {
        try state.withLock {
            if $0.failing { throw AuditUnavailableError(reason: "test sink told to fail") }
            $0.events.append(event)
        }
    }

    public func accepts(_ kind: AuditEvent.Kind) -> Bool {
        state.withLock { !$0.failing }
    }

    public func submit(_ event: AuditEvent) {
        state.withLock { if !$0.failing { $0.events.append(event) } }
    }

    /// Makes every later `record` throw (or succeed again).
    public func setFailing(_ failing: Bool) {
        state.withLock { $0.failing = failing }
    }

    public var events: [AuditEvent] { state.withLock { $0.events } }

    public func events(_ kind: AuditEvent.Kind) -> [AuditEvent] { events.filter { $0.kind == kind } }
}
