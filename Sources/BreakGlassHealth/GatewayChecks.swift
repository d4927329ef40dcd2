import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassConfig
import BreakGlassCore
import BreakGlassTokens
import Foundation
import NIOSSL

/// The gateway-wide checks made with every self-test round: TLS certificate expiry, the token and
/// audit keys, the audit log (writable, free space), the policy in force, and the clock.
struct GatewayChecks: Sendable {
    let store: PolicyStore
    /// The token authority in force (it changes when a reload brings a new key).
    let tokens: @Sendable () -> TokenAuthority
    let audit: any AuditSink
    let auditLog: AuditLog?

    /// Where the clocks stood at the previous run, to notice the wall clock jumping.
    struct ClockMark: Sendable {
        var wall: Date
        var monotonic: ContinuousClock.Instant
    }

    struct Outcome: Sendable {
        var checks: [HealthCheck]
        var certificateExpiry: TimeInterval?
        var clock: ClockMark
    }

    func run(previous: ClockMark?) async -> Outcome {
        let loaded = store.current
        let now = Date()
        var checks: [HealthCheck] = []
        let probes = loaded.policy.probes
        let warn = probes?.certificateWarn ?? .seconds(14 * 86_400)
        let fail = probes?.certificateFail ?? .seconds(2 * 86_400)
        let (certificate, expiry) = Self.certificate(path: loaded.policy.gateway.tlsCertificate, now: now, warn: warn, fail: fail)
        checks.append(certificate)
        checks.append(await tokenKey(now: now))
        checks.append(auditCheck(settings: loaded.policy.gateway.audit))
        if let rejection = store.lastRejection {
            let first = " (\(rejection.error.issues.count) error(s), listed in the gateway log and the policy.rejected audit record)"
            checks.append(
                HealthCheck(
                    name: "policy", state: .degraded,
                    detail:
                        "the policy file was rejected at \(AuditValue.time(rejection.at))\(first); the last known good policy (sha256 \(loaded.sha256.prefix(12))) stays in force"
                ))
        } else {
            checks.append(
                HealthCheck(
                    name: "policy", state: .healthy,
                    detail: "in force: sha256 \(loaded.sha256.prefix(12)), loaded \(AuditValue.time(loaded.loadedAt))"))
        }
        let mark = ClockMark(wall: now, monotonic: .now)
        checks.append(Self.clock(now: mark, previous: previous))
        return Outcome(checks: checks, certificateExpiry: expiry, clock: mark)
    }

    static func certificate(path: String, now: Date, warn: Duration, fail: Duration) -> (HealthCheck, TimeInterval?) {
        guard let leaf = try? NIOSSLCertificate.fromPEMFile(path).first else {
            return (HealthCheck(name: "certificate", state: .failing, detail: "\(path) does not hold a PEM certificate"), nil)
        }
        let notAfter = Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter))
        let left = notAfter.timeIntervalSince(now)
        let days = String(format: "%.1f", left / 86_400)
        let when = "expires \(AuditValue.time(notAfter)) (in \(days) days)"
        if left <= 0 {
            return (
                HealthCheck(name: "certificate", state: .failing, detail: "the TLS certificate expired \(AuditValue.time(notAfter))"), left
            )
        }
        if left < Double(fail.totalMilliseconds) / 1000 {
            return (HealthCheck(name: "certificate", state: .failing, detail: "the TLS certificate \(when): renew it now"), left)
        }
        if left < Double(warn.totalMilliseconds) / 1000 {
            return (HealthCheck(name: "certificate", state: .degraded, detail: "the TLS certificate \(when): renew it soon"), left)
        }
        return (HealthCheck(name: "certificate", state: .healthy, detail: "the TLS certificate \(when)"), left)
    }

    private func tokenKey(now: Date) async -> HealthCheck {
        let authority = tokens()
        let grant = Grant(
            session: "health-check", user: "health-check", pathway: "health-check", reason: "key check", ticket: nil, issuedAt: now,
            expiresAt: now.addingTimeInterval(60), amr: [], source: nil)
        do {
            let token = try await authority.issue(grant)
            _ = try await authority.verify(token, audience: "health-check", now: now)
            return HealthCheck(name: "token_key", state: .healthy, detail: "signs and verifies (key id \(authority.key.keyID))")
        } catch {
            return HealthCheck(name: "token_key", state: .failing, detail: "the token key cannot sign: \(error)")
        }
    }

    private func auditCheck(settings: AuditSettings?) -> HealthCheck {
        guard let auditLog else {
            return audit.accepts(.grantIssued)
                ? HealthCheck(name: "audit", state: .healthy, detail: "the audit sink accepts records")
                : HealthCheck(name: "audit", state: .failing, detail: "the audit sink refuses records")
        }
        if case .failed(let why) = auditLog.health {
            return HealthCheck(name: "audit", state: .failing, detail: "the audit log stopped: \(why)")
        }
        guard (try? auditLog.signer.sign("breakglass key check\n")) != nil else {
            return HealthCheck(name: "audit", state: .failing, detail: "the checkpoint key cannot sign")
        }
        guard auditLog.accepts(.grantIssued) else {
            return HealthCheck(name: "audit", state: .failing, detail: "the audit log refuses new grants (disk full or writer behind)")
        }
        if case .degraded(let why) = auditLog.health {
            return HealthCheck(name: "audit", state: .degraded, detail: why)
        }
        let threshold = settings?.warnFree ?? auditLog.options.warnFreeBytes
        if let free = auditLog.freeBytes, free < threshold {
            return HealthCheck(
                name: "audit", state: .degraded,
                detail: "only \(free >> 20) MiB free on the audit disk (warn_free is \(threshold >> 20) MiB)")
        }
        let free = auditLog.freeBytes.map { ", \($0 >> 20) MiB free" } ?? ""
        return HealthCheck(name: "audit", state: .healthy, detail: "\(auditLog.size) records\(free)")
    }

    static func clock(now: ClockMark, previous: ClockMark?) -> HealthCheck {
        // A wall clock before this code was written is not set.
        if now.wall < Date(timeIntervalSince1970: 1_767_225_600) {
            return HealthCheck(
                name: "clock", state: .failing,
                detail: "the wall clock reads \(AuditValue.time(now.wall)): set the clock (tokens and TLS depend on it)")
        }
        if let previous {
            let wall = now.wall.timeIntervalSince(previous.wall)
            let elapsed = previous.monotonic.duration(to: now.monotonic)
            let monotonic = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let jump = wall - monotonic
            if abs(jump) > 5 {
                return HealthCheck(
                    name: "clock", state: .degraded,
                    detail: String(
                        format: "the wall clock jumped %+.1f s since the previous check (token expiry follows the wall clock)", jump))
            }
        }
        return HealthCheck(name: "clock", state: .healthy, detail: "wall clock \(AuditValue.time(now.wall))")
    }
}
