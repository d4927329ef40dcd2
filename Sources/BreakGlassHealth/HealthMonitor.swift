import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassClient
import BreakGlassConfig
import BreakGlassCore
import BreakGlassTokens
import Foundation
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization

/// Runs the self-test rounds (every `probes.interval` plus jitter, or at once when asked), keeps
/// each pathway's health with hysteresis, and tells people about every change: log, audit
/// (`pathway.state`), alert and metrics. Without a `probes:` section it still makes the
/// gateway-wide checks every minute.
public final class HealthMonitor: Service, Sendable {
    private struct State {
        var trackers: [String: PathwayHealthTracker] = [:]
        var checks: [HealthCheck] = []
        var lastRound: ProbeRoundReport?
        var lastStep: Int64 = 0
        var clock: GatewayChecks.ClockMark?
        var certificateExpiry: TimeInterval?
        var round: Task<ProbeRoundReport, Never>?
        var listener: SocketAddress?
    }

    private let store: PolicyStore
    private let checks: GatewayChecks
    /// Live sessions that hold connections, for the health answer.
    private let activeSessions: @Sendable () -> Int
    private let audit: any AuditSink
    private let auditLog: AuditLog?
    private let metrics: GatewayMetrics
    private let alerts: AlertDispatcher?
    private let logger: Logger
    private let state = Mutex(State())

    package init(
        store: PolicyStore, tokens: @escaping @Sendable () -> TokenAuthority, activeSessions: @escaping @Sendable () -> Int,
        audit: any AuditSink, auditLog: AuditLog?, metrics: GatewayMetrics, alerts: AlertDispatcher?, logger: Logger
    ) {
        self.store = store
        self.checks = GatewayChecks(store: store, tokens: tokens, audit: audit, auditLog: auditLog)
        self.activeSessions = activeSessions
        self.audit = audit
        self.auditLog = auditLog
        self.metrics = metrics
        self.alerts = alerts
        self.logger = logger
    }

    /// Where the gateway listens; probes connect there unless `probes.connect` says otherwise.
    package func listening(on address: SocketAddress?) {
        state.withLock { $0.listener = address }
    }

    // MARK: rounds

    /// Rounds until graceful shutdown: the first a moment after start, then every interval plus jitter.
    public func run() async throws {
        var wait = Duration.milliseconds(500)
        while !Task.isCancelled {
            do {
                let pause = wait
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            } catch {
                return
            }
            if Task.isCancelled { return }
            _ = await round()
            let probes = store.current.policy.probes
            let interval = probes?.interval ?? .seconds(60)
            let jitter = probes?.jitter ?? .zero
            let spread = jitter > .zero ? Duration.milliseconds(Int64.random(in: 0...jitter.totalMilliseconds)) : .zero
            wait = interval + spread
        }
    }

    /// Runs a round now (or joins the one running) and returns its report.
    public func round(only pathway: String? = nil) async -> ProbeRoundReport {
        let task: Task<ProbeRoundReport, Never> = state.withLock { state in
            if let running = state.round { return running }
            let task = Task { await self.runRound() }
            state.round = task
            return task
        }
        let report = await task.value
        state.withLock { if $0.round == task { $0.round = nil } }
        guard let pathway else { return report }
        var filtered = report
        filtered.pathways = report.pathways.filter { $0.pathway == pathway }
        return filtered
    }

    private func runRound() async -> ProbeRoundReport {
        let loaded = store.current
        let previousClock = state.withLock { $0.clock }
        let outcome = await checks.run(previous: previousClock)
        var report = ProbeRoundReport(startedAt: Date(), milliseconds: 0, login: nil, pathways: [], checks: outcome.checks)
        let pathways = loaded.policy.pathways.values.sorted { $0.name < $1.name }
        if let settings = loaded.policy.probes {
            switch prepare(settings) {
            case .failure(let failure):
                report.pathways = pathways.filter { $0.probe != .disabled }.map {
                    PathwayProbeResult(
                        pathway: $0.name, probe: $0.probe.summary, session: nil, steps: [], failure: failure, finishedAt: Date())
                }
            case .success(let (runner, credentials)):
                let step = await nextStep(credentials)
                var probed = await runner.run(pathways: pathways, credentials: credentials, step: step)
                probed.checks = outcome.checks
                report = probed
            }
        }
        record(report, outcome: outcome, pathways: pathways)
        return report
    }

    /// The runner and credentials for a round, or why the round cannot start.
    private func prepare(_ settings: ProbeSettings) -> Result<(ProbeRunner, ProbeCredentials), ProbeFailure> {
        let credentials: ProbeCredentials
        do {
            credentials = try ProbeCredentials.load(path: settings.credentials)
        } catch {
            return .failure(ProbeFailure(step: "login", message: "probe credentials: \(error.message)", at: Date()))
        }
        let tls: NIOSSLContext
        do {
            tls = try GatewayConnection.tlsContext(caFile: settings.ca)
        } catch {
            return .failure(ProbeFailure(step: "connect", message: error.message, at: Date()))
        }
        let listen = store.current.policy.gateway.listen
        let bound = state.withLock { $0.listener }
        var host = settings.connect?.host ?? listen.host
        let port = settings.connect?.port ?? bound?.port ?? listen.port
        if host == "0.0.0.0" { host = "127.0.0.1" }
        if host == "::" { host = "::1" }
        let target = ProbeRunner.Target(host: host, port: port, serverName: settings.serverName, tls: tls)
        return .success((ProbeRunner(settings: settings, target: target, auditLog: auditLog), credentials))
    }

    /// The time step whose code the round uses: never one already used (pam_oath refuses a code
    /// that is not newer than the last it accepted), waiting when the next one is too far ahead.
    private func nextStep(_ credentials: ProbeCredentials) async -> Int64 {
        let now = credentials.step(at: Date())
        let window = Int64(credentials.window)
        let step = state.withLock { state in
            // The first round after a start skips the current step: the gateway that ran before may have used it.
            if state.lastStep == 0 { state.lastStep = now }
            // Far ahead means the wall clock went back: start again from now (the clock check says so).
            if state.lastStep > now + window + 1 { state.lastStep = now }
            let step = max(now, state.lastStep + 1)
            state.lastStep = step
            return step
        }
        if step > now + window {
            // At most one period: by then the step is within the window.
            let usable = Date(timeIntervalSince1970: TimeInterval((step - window) * Int64(credentials.period)))
            let wait = min(usable.timeIntervalSinceNow, TimeInterval(credentials.period))
            if wait > 0 { try? await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 10)) }
        }
        return step
    }

    private func record(_ report: ProbeRoundReport, outcome: GatewayChecks.Outcome, pathways: [Pathway]) {
        let settings = store.current.policy.probes
        var transitions: [(String, PathwayHealthTracker.Transition, ProbeFailure?)] = []
        var checkChanges: [(HealthCheck, HealthState)] = []
        state.withLock { state in
            for result in report.pathways {
                var tracker =
                    state.trackers[result.pathway]
                    ?? PathwayHealthTracker(failAfter: settings?.failAfter ?? 2, recoverAfter: settings?.recoverAfter ?? 2)
                if let transition = tracker.record(result) { transitions.append((result.pathway, transition, result.failure)) }
                state.trackers[result.pathway] = tracker
            }
            // Pathways no longer in the policy are forgotten.
            let names = Set(pathways.map(\.name))
            state.trackers = state.trackers.filter { names.contains($0.key) }
            for check in outcome.checks {
                let before = state.checks.first { $0.name == check.name }?.state ?? .healthy
                if check.state != before { checkChanges.append((check, before)) }
            }
            state.checks = outcome.checks
            state.lastRound = report
            state.clock = outcome.clock
            state.certificateExpiry = outcome.certificateExpiry
        }
        for result in report.pathways {
            metrics.probeResult(pathway: result.pathway, passed: result.passed)
            for step in result.steps {
                metrics.probeStep(pathway: result.pathway, step: step.name, duration: .microseconds(Int64(step.milliseconds * 1000)))
            }
            if let login = report.login {
                metrics.probeStep(pathway: result.pathway, step: "login", duration: .microseconds(Int64(login.milliseconds * 1000)))
            }
        }
        for pathway in pathways {
            let current = state.withLock { $0.trackers[pathway.name]?.state } ?? .unknown
            metrics.pathwayState(pathway: pathway.name, value: current.gaugeValue)
        }
        if !report.pathways.isEmpty {
            metrics.round(passed: report.passed)
            var fields: [String: AuditValue] = [
                "passed": .strings(report.pathways.filter(\.passed).map(\.pathway)),
                "failed": .strings(report.pathways.filter { !$0.passed }.map(\.pathway)),
                "duration_ms": .integer(Int64(report.milliseconds)),
            ]
            fields["login_ms"] = report.login.map { .integer(Int64($0.milliseconds)) }
            audit.submit(AuditEvent(kind: .probeRound, time: Date(), fields: fields))
        }
        for (pathway, transition, failure) in transitions {
            var fields: [String: AuditValue] = [
                "pathway": .string(pathway), "from": .string(transition.from.rawValue), "to": .string(transition.to.rawValue),
            ]
            fields["step"] = failure.map { .string($0.step) }
            fields["message"] = failure.map { .string($0.message) }
            let level: Logger.Level = transition.to == .failing ? .error : (transition.to == .healthy ? .notice : .warning)
            logger.log(
                level: level, "pathway \(pathway) is \(transition.to.rawValue)",
                metadata: ["was": "\(transition.from.rawValue)", "error": "\(failure?.message ?? "")"])
            audit.submit(AuditEvent(kind: .pathwayState, time: Date(), fields: fields))
            // A new pathway's first pass is no news for people.
            if !(transition.from == .unknown && transition.to == .healthy) {
                alerts?.fire(Alert(kind: "pathway.state", time: Date(), fields: fields))
            }
        }
        for (check, before) in checkChanges {
            let kind: String
            switch check.name {
            case "certificate": kind = "certificate.expiring"
            case "audit": kind = check.state == .failing ? "audit.failed" : "audit.degraded"
            default: kind = "health.check"
            }
            logger.log(level: check.state == .healthy ? .notice : .warning, "\(check.name) is \(check.state.rawValue): \(check.detail)")
            if check.state > before || kind == "health.check" {
                alerts?.fire(
                    Alert(
                        kind: kind, time: Date(),
                        fields: ["check": .string(check.name), "state": .string(check.state.rawValue), "detail": .string(check.detail)]))
            }
        }
    }

    // MARK: reports

    /// `GET /v1/health`.
    public struct Report: Sendable, Codable {
        /// One pathway's health.
        public struct PathwayHealth: Sendable, Codable {
            /// The pathway's state after hysteresis; `unknown` when it is not probed.
            public var state: HealthState
            /// What the probe does, or why there is none.
            public var probe: String
            /// When the last probe ended.
            public var lastRun: Date?
            /// When a probe last passed.
            public var lastSuccess: Date?
            /// The latest failure, kept after later passes.
            public var lastError: ProbeFailure?
            /// Probes failed in a row up to the last one (0 after a pass).
            public var consecutiveFailures: Int
            /// The last probe's steps with their timings.
            public var steps: [ProbeStep]

            enum CodingKeys: String, CodingKey {
                case state, probe, steps
                case lastRun = "last_run"
                case lastSuccess = "last_success"
                case lastError = "last_error"
                case consecutiveFailures = "consecutive_failures"
            }
        }

        /// The worst of the checks and the probed pathways.
        public var state: HealthState
        /// Whether the gateway can grant and audit now (`ready()`).
        public var ready: Bool
        /// The gateway's `id`.
        public var gateway: String
        /// The gateway-wide checks, as last made.
        public var checks: [HealthCheck]
        /// Every pathway of the policy by name.
        public var pathways: [String: PathwayHealth]
        /// When the last round began.
        public var lastRound: Date?
        /// How long the last round took.
        public var roundMilliseconds: Double?
        /// How long the last round's PAM login took.
        public var loginMilliseconds: Double?
        /// Live sessions, probe sessions included.
        public var activeSessions: Int

        enum CodingKeys: String, CodingKey {
            case state, ready, gateway, checks, pathways
            case lastRound = "last_round"
            case roundMilliseconds = "round_ms"
            case loginMilliseconds = "login_ms"
            case activeSessions = "active_sessions"
        }
    }

    /// What the network may see of a report: states, steps, codes and timings, but no words of an
    /// error or a check (they name addresses, files and keys); the admin socket has those.
    public static func withoutDetails(_ report: Report) -> Report {
        var report = report
        let withheld = "withheld here: GET /v1/admin/health on the admin socket has the details"
        for name in report.pathways.keys { report.pathways[name]?.lastError?.message = withheld }
        report.checks = report.checks.map { HealthCheck(name: $0.name, state: $0.state, detail: $0.state == .healthy ? "" : withheld) }
        return report
    }

    /// The health in force: the overall state is the worst of the checks and the probed pathways.
    public func report() -> Report {
        let loaded = store.current
        let snapshot = state.withLock { ($0.trackers, $0.checks, $0.lastRound) }
        var pathways: [String: Report.PathwayHealth] = [:]
        for pathway in loaded.policy.pathways.values {
            let tracker = snapshot.0[pathway.name]
            pathways[pathway.name] = Report.PathwayHealth(
                state: pathway.probe == .disabled || loaded.policy.probes == nil ? .unknown : tracker?.state ?? .unknown,
                probe: loaded.policy.probes == nil ? "not probed (no probes section)" : pathway.probe.summary,
                lastRun: tracker?.lastResult?.finishedAt,
                lastSuccess: tracker?.lastSuccess,
                lastError: tracker?.lastFailure,
                consecutiveFailures: tracker?.consecutiveFailures ?? 0,
                steps: tracker?.lastResult?.steps ?? []
            )
        }
        var overall = snapshot.1.map(\.state).max() ?? .healthy
        let probed = pathways.values.filter { $0.state != .unknown }
        if let worst = probed.map(\.state).max(), worst > .healthy {
            // One broken pathway degrades the gateway; all of them broken fails it.
            overall = max(overall, probed.allSatisfy { $0.state == .failing } ? .failing : .degraded)
        }
        return Report(
            state: overall,
            ready: ready(),
            gateway: loaded.policy.gateway.id,
            checks: snapshot.1,
            pathways: pathways,
            lastRound: snapshot.2?.startedAt,
            roundMilliseconds: snapshot.2?.milliseconds,
            loginMilliseconds: snapshot.2?.login?.milliseconds,
            activeSessions: activeSessions()
        )
    }

    /// Whether the gateway can grant and audit now (for load balancers): the audit log takes
    /// grants and the TLS certificate has not expired.
    public func ready() -> Bool {
        guard audit.accepts(.grantIssued) else { return false }
        let expiry = state.withLock { $0.certificateExpiry }
        return expiry.map { $0 > 0 } ?? true
    }

    /// The `/metrics` text.
    package func metricsText() -> [UInt8] {
        let report = report()
        let expiry = state.withLock { $0.certificateExpiry }
        return metrics.exposition(
            GatewayMetrics.Snapshot(
                activeSessions: report.activeSessions, certificateExpiry: expiry, auditRecords: auditLog?.size,
                health: report.state.gaugeValue))
    }
}
