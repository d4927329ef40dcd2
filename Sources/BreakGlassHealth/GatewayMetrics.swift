import BreakGlassCore
import CoreMetrics
import Prometheus
import Synchronization

/// The gateway's instruments (swift-metrics over a Prometheus registry of its own, so that several
/// gateways in one process keep separate numbers) and the `/metrics` text.
public final class GatewayMetrics: Sendable {
    /// Help text of every metric the gateway defines (and the audit writer's).
    static let help: [String: String] = [
        "breakglass_grants_issued_total": "Grants issued, by pathway and tag (none, probe, drill).",
        "breakglass_grants_denied_total": "Grant requests refused, by pathway (unknown for names not in the policy) and error code.",
        "breakglass_lockouts_total": "Lockouts engaged after failed logins, by scope (user or source).",
        "breakglass_active_sessions": "Grants issued and not yet expired, released or revoked.",
        "breakglass_proxy_requests_total": "Proxied HTTP requests, by pathway and status class.",
        "breakglass_proxy_bytes_total": "Bytes carried for clients, by pathway and direction (in: to the upstream, out: to the client).",
        "breakglass_tunnels_total": "CONNECT tunnels closed, by pathway.",
        "breakglass_probe_success": "1 when the pathway's latest self-test passed, 0 when it failed.",
        "breakglass_probe_duration_seconds": "Time of each self-test step, by pathway and step.",
        "breakglass_probe_rounds_total": "Self-test rounds run, by result (pass or fail).",
        "breakglass_pathway_state": "Pathway health: 0 healthy, 1 degraded, 2 failing, 3 not yet probed or not probed.",
        "breakglass_health_state": "Gateway health: 0 healthy, 1 degraded, 2 failing.",
        "breakglass_certificate_expiry_seconds": "Seconds until the gateway's TLS certificate expires.",
        "breakglass_audit_records": "Durable records in the audit log.",
        "breakglass_audit_appends_total": "Audit records made durable.",
        "breakglass_audit_batch_records": "Records per audit write and fdatasync.",
        "breakglass_audit_fsync_seconds": "Latency of the audit log's fdatasync calls.",
        "breakglass_alerts_total": "Alert deliveries, by sink and outcome (delivered, failed attempt, dropped).",
    ]

    /// A pathway's data-path counters, made on its first request and kept.
    private struct PathwayMeters {
        /// By status class: index 0 for requests without a status, 1...5 for 1xx...5xx.
        var requests: [CoreMetrics.Counter?] = Array(repeating: nil, count: 6)
        var bytesIn: CoreMetrics.Counter
        var bytesOut: CoreMetrics.Counter
    }

    let registry = PrometheusCollectorRegistry()
    /// The factory every instrument of this gateway comes from (also given to the audit log).
    public let factory: any MetricsFactory
    private let meters = Mutex<[String: PathwayMeters]>([:])

    /// Instruments in a Prometheus registry of their own.
    public init() {
        factory = PrometheusHelpFactory(
            registry: registry,
            help: Self.help,
            timerBuckets: [
                "breakglass_audit_fsync_seconds": [
                    .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
                ]
            ],
            durationBuckets: [
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            ],
            recorderBuckets: [:],
            valueBuckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]
        )
    }

    // MARK: grants

    package func grantIssued(pathway: String, tag: Grant.Tag?) {
        CoreMetrics.Counter(
            label: "breakglass_grants_issued_total", dimensions: [("pathway", pathway), ("tag", tag?.rawValue ?? "none")], factory: factory
        )
        .increment()
    }

    /// `pathway` must be a name from the policy (or nil), so that labels stay few.
    package func grantDenied(pathway: String?, code: BreakGlassError.Code) {
        CoreMetrics.Counter(
            label: "breakglass_grants_denied_total", dimensions: [("pathway", pathway ?? "unknown"), ("code", code.rawValue)],
            factory: factory
        ).increment()
    }

    package func lockout(scope: String) {
        CoreMetrics.Counter(label: "breakglass_lockouts_total", dimensions: [("scope", scope)], factory: factory).increment()
    }

    // MARK: data path

    /// One proxied request; on every request, so the counters are kept rather than looked up.
    package func request(pathway: String, status: Int?, bytesIn: Int, bytesOut: Int) {
        let statusClass = status.map { (1...5).contains($0 / 100) ? $0 / 100 : 0 } ?? 0
        let (requests, inward, outward) = meters.withLock { meters in
            withMeters(&meters, pathway) { pathwayMeters in
                if pathwayMeters.requests[statusClass] == nil {
                    pathwayMeters.requests[statusClass] = CoreMetrics.Counter(
                        label: "breakglass_proxy_requests_total",
                        dimensions: [("pathway", pathway), ("class", statusClass == 0 ? "error" : "\(statusClass)xx")], factory: factory)
                }
                return (pathwayMeters.requests[statusClass], pathwayMeters.bytesIn, pathwayMeters.bytesOut)
            }
        }
        requests?.increment()
        carried(inward, outward, bytesIn: bytesIn, bytesOut: bytesOut)
    }

    package func tunnelClosed(pathway: String, bytesIn: Int, bytesOut: Int) {
        CoreMetrics.Counter(label: "breakglass_tunnels_total", dimensions: [("pathway", pathway)], factory: factory).increment()
        let (inward, outward) = meters.withLock { meters in withMeters(&meters, pathway) { ($0.bytesIn, $0.bytesOut) } }
        carried(inward, outward, bytesIn: bytesIn, bytesOut: bytesOut)
    }

    /// Bytes carried for clients, both ways.
    private func carried(_ inward: CoreMetrics.Counter, _ outward: CoreMetrics.Counter, bytesIn: Int, bytesOut: Int) {
        if bytesIn > 0 { inward.increment(by: bytesIn) }
        if bytesOut > 0 { outward.increment(by: bytesOut) }
    }

    /// Runs `body` on the pathway's kept counters, made first when the pathway has none yet.
    private func withMeters<Result>(
        _ meters: inout [String: PathwayMeters], _ pathway: String, _ body: (inout PathwayMeters) -> Result
    ) -> Result {
        body(&meters[pathway, default: makeMeters(pathway)])
    }

    private func makeMeters(_ pathway: String) -> PathwayMeters {
        func bytes(_ direction: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: "breakglass_proxy_bytes_total", dimensions: [("pathway", pathway), ("direction", direction)], factory: factory)
        }
        return PathwayMeters(bytesIn: bytes("in"), bytesOut: bytes("out"))
    }

    // MARK: health

    func probeStep(pathway: String, step: String, duration: Duration) {
        CoreMetrics.Timer(label: "breakglass_probe_duration_seconds", dimensions: [("pathway", pathway), ("step", step)], factory: factory)
            .recordNanoseconds(duration.totalNanoseconds)
    }

    func probeResult(pathway: String, passed: Bool) {
        CoreMetrics.Gauge(label: "breakglass_probe_success", dimensions: [("pathway", pathway)], factory: factory).record(passed ? 1 : 0)
    }

    func round(passed: Bool) {
        CoreMetrics.Counter(label: "breakglass_probe_rounds_total", dimensions: [("result", passed ? "pass" : "fail")], factory: factory)
            .increment()
    }

    func pathwayState(pathway: String, value: Int) {
        CoreMetrics.Gauge(label: "breakglass_pathway_state", dimensions: [("pathway", pathway)], factory: factory).record(value)
    }

    func alert(sink: String, outcome: String) {
        CoreMetrics.Counter(label: "breakglass_alerts_total", dimensions: [("sink", sink), ("outcome", outcome)], factory: factory)
            .increment()
    }

    /// Values read when scraped.
    struct Snapshot {
        var activeSessions: Int
        var certificateExpiry: Double?
        var auditRecords: Int?
        var health: Int
    }

    /// The Prometheus text exposition, after setting the gauges read at scrape time.
    func exposition(_ snapshot: Snapshot) -> [UInt8] {
        CoreMetrics.Gauge(label: "breakglass_active_sessions", factory: factory).record(snapshot.activeSessions)
        CoreMetrics.Gauge(label: "breakglass_health_state", factory: factory).record(snapshot.health)
        if let expiry = snapshot.certificateExpiry {
            CoreMetrics.Gauge(label: "breakglass_certificate_expiry_seconds", factory: factory).record(expiry)
        }
        if let records = snapshot.auditRecords {
            CoreMetrics.Gauge(label: "breakglass_audit_records", factory: factory).record(records)
        }
        return registry.emitToBuffer()
    }
}
