import BreakGlassAuditLog
import BreakGlassCore
import Foundation
import ServiceLifecycle

/// The audit log's lifetime as a service: first in the gateway's group, so the last to stop. At
/// graceful shutdown, once every other part has stopped and recorded what it had, it records
/// `gateway.stopped` and closes the log.
struct AuditLifetime: Service {
    let audit: any AuditSink
    /// The durable log, when the gateway opened one itself.
    let log: AuditLog?
    /// The gateway's id, for the record.
    let gateway: String

    func run() async {
        // Returns at graceful shutdown; throws at cancellation, which stops the log all the same.
        try? await gracefulShutdown()
        try? await audit.record(AuditEvent(kind: .gatewayStopped, time: .now, fields: ["gateway": .string(gateway)]))
        await log?.close()
    }
}
