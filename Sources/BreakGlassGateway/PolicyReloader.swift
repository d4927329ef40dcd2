import BreakGlassConfig
import BreakGlassCore
import Logging

/// The policy's reload (SIGHUP): loads the file and the keys it names, puts them in force in the
/// runtime, hands the new lockout settings to the grant flow, records the outcome, and has the live
/// sessions decided again under the new policy. A bad file or key keeps the last known good policy.
public struct PolicyReloader: Sendable {
    let runtime: GatewayRuntime
    let grants: GrantService
    let registry: SessionRegistry
    let audit: any AuditSink
    let clock: any WallClock
    let logger: Logger

    /// A reloader of `runtime`'s policy file; `grants` is told the new lockout settings, `registry`'s
    /// live sessions are reviewed.
    public init(
        runtime: GatewayRuntime, grants: GrantService, registry: SessionRegistry, audit: any AuditSink, clock: any WallClock,
        logger: Logger
    ) {
        self.runtime = runtime
        self.grants = grants
        self.registry = registry
        self.audit = audit
        self.clock = clock
        self.logger = logger
    }

    /// Reloads the policy file and its keys; a bad file or key keeps the last known good policy.
    public func reload() async -> PolicyStore.ReloadOutcome {
        let store = runtime.store
        let previous = store.current
        let outcome = await store.reload(now: clock.now()) { loaded throws(PolicyValidationError) in
            let resources = try await GatewayResources.load(loaded)
            runtime.replace(resources)
            grants.updateLockout(loaded.policy.gateway.lockout)
        }
        switch outcome {
        case .loaded(let loaded):
            if loaded.policy.gateway.listen != previous.policy.gateway.listen || loaded.policy.gateway.pam != previous.policy.gateway.pam
                || loaded.policy.alerts != previous.policy.alerts
            {
                logger.warning("gateway.listen, gateway.pam and alerts changes take effect at the next restart")
            }
            logger.notice(
                "policy reloaded",
                metadata: ["file": "\(loaded.file)", "sha256": "\(loaded.sha256)", "pathways": "\(loaded.policy.pathways.count)"])
            try? await audit.record(
                AuditEvent(
                    kind: .policyLoaded, time: clock.now(), fields: ["file": .string(loaded.file), "sha256": .string(loaded.sha256)]))
            // Live grants are decided again: what the new policy no longer allows ends now.
            await registry.review(under: loaded.policy, previous: previous.policy)
        case .rejected(let error, let keeping):
            logger.error(
                "POLICY RELOAD REJECTED: the last known good policy stays in force",
                metadata: ["file": "\(store.path)", "in_force_sha256": "\(keeping.sha256)", "errors": "\(error.issues.map(\.description))"]
            )
            try? await audit.record(
                AuditEvent(
                    kind: .policyRejected,
                    time: clock.now(),
                    fields: [
                        "file": .string(store.path), "errors": .strings(error.issues.map(\.description)),
                        "in_force_sha256": .string(keeping.sha256),
                    ]
                )
            )
        }
        return outcome
    }
}
