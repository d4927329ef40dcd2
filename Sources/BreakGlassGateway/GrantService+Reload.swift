import BreakGlassConfig
import BreakGlassCore
import Foundation
import Logging
import Synchronization

/// The policy's reload, and the review of live sessions under the policy in force.
extension GrantService {
    /// Applies `policy` to every live session (`Policy.review`): at a reload, with the policy the
    /// sessions were issued under as `previous`; at start, without one.
    public func reviewSessions(under policy: Policy, previous: Policy?) async {
        guard let registry else { return }
        let (ended, shortened) = await registry.review { info in
            policy.review(
                user: info.user, pathway: info.pathway, tag: info.tag, issuedAt: info.issuedAt, expiresAt: info.expiresAt,
                previous: previous)
        }
        if ended + shortened > 0 {
            logger.warning(
                "live grants decided again under the policy in force", metadata: ["revoked": "\(ended)", "shortened": "\(shortened)"])
        }
    }

    /// Reloads the policy file and its keys; a bad file or key keeps the last known good policy.
    public func reload() async -> PolicyStore.ReloadOutcome {
        let previous = store.current
        let outcome = await store.reload(now: clock.now()) { loaded throws(PolicyValidationError) in
            let resources = try await GatewayResources.load(loaded)
            self.runtime.replace(resources)
            self.lockout.withLock { $0.update(policy: loaded.policy.gateway.lockout) }
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
            await reviewSessions(under: loaded.policy, previous: previous.policy)
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
