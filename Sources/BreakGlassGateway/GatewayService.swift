import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassPAM
import BreakGlassProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The whole gateway as a long-running service: listener, PAM workers, and policy reload on SIGHUP.
public final class GatewayService: Service, Sendable {
    /// The policy, TLS context and token authority in force.
    public let runtime: GatewayRuntime
    /// The grant flow.
    public let grants: GrantService
    /// The policy's reload (SIGHUP).
    public let reloader: PolicyReloader
    /// The live sessions (the grant flow tracks them, the proxy admits to them, operators revoke them).
    public let registry: SessionRegistry
    /// Refusals without valid credentials, summarized per source (grant flow and proxy).
    public let denials: DenialLedger
    /// The data path: proxied requests, tunnels, and the live sessions they belong to.
    public let proxy: PathwayProxy
    private let pam: PAMAuthenticator
    private let audit: any AuditSink
    /// The durable log this service opened itself (and closes when it stops).
    public let auditLog: AuditLog?
    /// Self-tests, health and metrics.
    public let monitor: HealthMonitor
    let metrics: GatewayMetrics
    private let alerts: AlertDispatcher?
    private let router: APIRouter
    private let group: any EventLoopGroup
    private let limits: HTTPLimits
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress?) -> Void

    /// Loads the policy and everything it names; throws every problem found when anything is invalid.
    /// Without an `audit` sink, the durable log of the policy's `gateway.audit` section is opened.
    public init(
        policyPath: String,
        audit: (any AuditSink)? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        limits: HTTPLimits = HTTPLimits(),
        clock: any WallClock = SystemWallClock(),
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress?) -> Void = { _ in }
    ) async throws(PolicyValidationError) {
        // Alert programs that exit without reading must not kill the gateway with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let store = try PolicyStore(path: policyPath, now: clock.now())
        let loaded = store.current
        let metrics = GatewayMetrics()
        let resources = try await GatewayResources.load(loaded)
        let sink: any AuditSink
        if let audit {
            sink = audit
            self.auditLog = nil
        } else {
            guard let settings = loaded.policy.gateway.audit else {
                throw PolicyValidationError(issues: [
                    PolicyIssue(file: loaded.file, line: 0, column: 0, keyPath: "gateway.audit", message: "is required")
                ])
            }
            do {
                let log = try AuditLog.open(settings: settings, origin: loaded.policy.gateway.id, metrics: metrics.factory, logger: logger)
                sink = log
                self.auditLog = log
            } catch {
                throw PolicyValidationError(issues: [
                    PolicyIssue(
                        file: loaded.file, line: 0, column: 0, keyPath: "gateway.audit",
                        message: "the audit log cannot be opened: \(error.message)")
                ])
            }
        }
        let settings = loaded.policy.gateway.pam
        self.pam = PAMAuthenticator(
            service: settings.service,
            confdir: settings.confdir,
            threads: settings.threads,
            maxPending: settings.maxPending,
            logger: logger
        )
        // Sessions are kept beside the audit log: a restart keeps released and revoked ones ended, and
        // audits the expiry of grants that expired while the gateway was down.
        let registry = SessionRegistry(
            audit: sink,
            clock: clock,
            group: group,
            endedFile: auditLog.map { $0.directory + "/ended-sessions.json" },
            logger: logger
        )
        // The sessions issued before this start, and their ends, as the audit log records them.
        if let auditLog { await registry.restore(fromAuditLog: auditLog.directory, policy: loaded.policy) }
        let alerts =
            loaded.policy.alerts.isEmpty
            ? nil
            : AlertDispatcher(sinks: loaded.policy.alerts, gateway: loaded.policy.gateway.id, audit: sink, metrics: metrics, logger: logger)
        let runtime = GatewayRuntime(store: store, resources: resources)
        self.runtime = runtime
        let denials = DenialLedger(
            audit: sink, clock: clock, group: group, interval: { store.current.policy.gateway.limits.denialInterval }, logger: logger)
        self.denials = denials
        let grants = GrantService(
            runtime: runtime, denials: denials, pam: pam, audit: sink, registry: registry, clock: clock, metrics: metrics, alerts: alerts,
            logger: logger)
        self.grants = grants
        self.registry = registry
        self.reloader = PolicyReloader(runtime: runtime, grants: grants, registry: registry, audit: sink, clock: clock, logger: logger)
        self.proxy = PathwayProxy(runtime: runtime, denials: denials, registry: registry, audit: sink, clock: clock, metrics: metrics)
        let monitor = HealthMonitor(
            store: store, tokens: { runtime.tokens }, activeSessions: { registry.liveSessionsWithConnections().count }, audit: sink,
            auditLog: auditLog, metrics: metrics, alerts: alerts, logger: logger)
        self.monitor = monitor
        self.metrics = metrics
        self.alerts = alerts
        self.router = APIRouter(
            grants: grants, runtime: runtime, monitor: monitor,
            trail: auditLog.map { AuditTrail(runtime: runtime, auditLog: $0, clock: clock) })
        registry.onRevoked = { sessions, actor, reason in
            for session in sessions {
                var fields: [String: AuditValue] = [
                    "session": .string(session.session), "user": .string(session.user), "pathway": .string(session.pathway),
                    "by": .string(actor),
                ]
                fields["reason"] = reason.map(AuditValue.string)
                alerts?.fire(Alert(kind: "grant.revoked", time: clock.now(), fields: fields))
            }
        }
        self.audit = sink
        self.group = group
        self.limits = limits
        self.logger = logger
        self.onListening = onListening
    }

    /// The gateway's long-lived parts, in the order a `ServiceGroup` starts them; it stops them in
    /// the reverse order, each once the one after it has stopped: the listeners (this service),
    /// then the self-tests, then PAM with the sessions file and the denial summaries, then the
    /// alerts still queued, then the audit log, which records `gateway.stopped` and closes.
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: AuditLifetime(audit: audit, log: auditLog, gateway: runtime.store.current.policy.gateway.id))
        ]
        if let alerts { services.append(.init(service: alerts)) }
        services.append(.init(service: SessionLifetime(pam: pam, registry: registry, denials: denials)))
        services.append(.init(service: monitor))
        // A listener that fails (at start, say) stops the rest in order too, so that the sessions
        // and summaries are written before the audit log closes.
        services.append(.init(service: self, failureTerminationBehavior: .gracefullyShutdownGroup))
        return services
    }

    /// Serves until graceful shutdown (SIGTERM/SIGINT through the service group), reloading on
    /// SIGHUP; then stops the listeners. The other parts are services of their own (`services`).
    public func run() async throws {
        let loaded = runtime.store.current
        let listen = loaded.policy.gateway.listen
        try await audit.record(
            AuditEvent(
                kind: .policyLoaded, time: loaded.loadedAt, fields: ["file": .string(loaded.file), "sha256": .string(loaded.sha256)])
        )
        let server = try await GatewayServer.start(
            host: listen.host,
            port: listen.port,
            runtime: runtime,
            proxy: proxy,
            router: router,
            limits: limits,
            group: group,
            logger: logger
        )
        try await audit.record(
            AuditEvent(
                kind: .gatewayStarted,
                time: loaded.loadedAt,
                fields: ["gateway": .string(loaded.policy.gateway.id), "listen": .string(server.localAddress?.hostAndPort ?? "?")]
            )
        )
        // Grants that expired while the gateway was down: their ends go on the record now.
        await registry.recordExpiredWhileDown()
        // The policy may have changed while the gateway was down: the grants rebuilt from the log
        // are decided again under it (which upstream they were issued for is not known here).
        await registry.review(under: loaded.policy, previous: nil)
        // Operators revoke through the admin socket; without it the gateway still serves (fail small).
        var admin: AdminServer?
        if let path = loaded.policy.gateway.adminSocketPath {
            do {
                admin = try await AdminServer.start(
                    path: path, group: loaded.policy.gateway.adminGroup, router: AdminRouter(registry: registry, monitor: monitor),
                    group: group, logger: logger)
            } catch {
                logger.error("admin socket unavailable: revocation is not possible", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        // Health and metrics at an address of their own, when the policy says so (fail small: the
        // door serves without them).
        var status: StatusServer?
        if case .address(let address) = loaded.policy.gateway.status {
            do {
                status = try await StatusServer.start(
                    address: address, router: StatusRouter(monitor: monitor), limits: loaded.policy.gateway.limits, group: group,
                    logger: logger)
            } catch {
                logger.error(
                    "status address unavailable: no health or metrics over the network",
                    metadata: ["address": "\(address)", "error": "\(error)"])
            }
        }
        monitor.listening(on: server.localAddress)
        onListening(server.localAddress)
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                let hangups = await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown()
                for await _ in hangups {
                    self.logger.notice("SIGHUP: reloading policy")
                    _ = await self.reloader.reload()
                }
            }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }
        logger.notice("shutting down: finishing requests in progress")
        await server.shutdown()
        await admin?.shutdown()
        await status?.shutdown()
    }
}
