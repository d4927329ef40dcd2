import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassPAM
import Foundation
import Logging
import Synchronization

/// The login behind every grant: the secrets' shape, the lockout, then PAM.
extension GrantService {
    /// How a login ended.
    enum LoginOutcome {
        /// PAM accepted the user: the methods used and Server-Timing entries.
        case authenticated(amr: [String], timing: [String])
        /// Refused before PAM gave a verdict (shape, lockout, busy, broken): summarized per source.
        case refused(BreakGlassError)
        /// Refused by PAM's verdict: recorded on its own (the lockout and the failure delay pace it).
        case failed(BreakGlassError)
    }

    /// Checks the secrets' shape, the lockout and PAM; a user whose logins failed often lately (from
    /// any sources) waits first, without holding a PAM worker. Failures take at least `failure_delay`.
    func login(_ input: GrantRequestBody, source: IPAddress?, started: ContinuousClock.Instant) async -> LoginOutcome {
        if input.password.isEmpty || input.password.utf8.count > GrantRequest.Limits.secretLength
            || (input.otp?.utf8.count ?? 0) > GrantRequest.Limits.secretLength
            || input.password.utf8.contains(0) || (input.otp?.utf8.contains(0) ?? false)
        {
            return .refused(BreakGlassError(.invalidRequest, "password and otp must be non-empty text of at most 1024 bytes"))
        }
        // IPv6 clients are counted per /64, the block one host usually controls.
        let lockoutKey = source?.lockoutKey ?? "unknown"
        let status = lockout.withLock { $0.admit(user: input.user, source: lockoutKey, now: .now) }
        var timing: [String] = []
        switch status {
        case .locked(let retryAfter, _):
            return .refused(lockedOut(retryAfter))
        case .delayed(let delay):
            let waitStarted = ContinuousClock.now
            do {
                try await Task.sleep(for: delay)
            } catch {
                lockout.withLock { $0.recordAbandoned(user: input.user, source: lockoutKey) }
                return .refused(BreakGlassError(.unavailable, "the login was cancelled", retryAfterSeconds: 1))
            }
            timing.append("delay;dur=\(Self.milliseconds(waitStarted.duration(to: .now)))")
        case .open:
            break
        }
        let pamResult: PAMAuthenticator.Attempt
        do {
            pamResult = try await pam.authenticate(
                user: input.user,
                password: input.password,
                oneTimeCode: input.otp,
                remoteHost: source.map { "\($0)" }
            )
        } catch {
            lockout.withLock { $0.recordAbandoned(user: input.user, source: lockoutKey) }
            return .refused(error)
        }
        switch pamResult.outcome {
        case .authenticated(let methods):
            lockout.withLock { $0.recordSuccess(user: input.user, source: lockoutKey) }
            timing += ["pam;dur=\(Self.milliseconds(pamResult.ran))", "pamwait;dur=\(Self.milliseconds(pamResult.waited))"]
            return .authenticated(amr: methods, timing: timing)
        case .refused(let detail):
            logger.info("login refused", metadata: ["user": "\(input.user)", "source": "\(lockoutKey)", "pam": "\(detail)"])
            let after = lockout.withLock { $0.recordFailure(user: input.user, source: lockoutKey, now: .now) }
            if case .locked(_, let scope) = after {
                logger.warning(
                    "lockout engaged", metadata: ["scope": "\(scope.rawValue)", "user": "\(input.user)", "source": "\(lockoutKey)"])
                metrics?.lockout(scope: scope.rawValue)
            }
            try? await Task.sleep(until: started.advanced(by: store.current.policy.gateway.pam.failureDelay), clock: .continuous)
            return .failed(BreakGlassError(.authenticationFailed, "authentication failed: the user, password or one-time code is wrong"))
        case .broken(let detail):
            lockout.withLock { $0.recordAbandoned(user: input.user, source: lockoutKey) }
            logger.error("PAM stack failed", metadata: ["service": "\(pam.service)", "pam": "\(detail)"])
            return .refused(
                BreakGlassError(
                    .unavailable, "the authentication service is not working; the gateway operator must check the PAM stack",
                    retryAfterSeconds: 5))
        }
    }

    /// Puts a reloaded policy's `gateway.lockout` settings in force; locks already set run out as
    /// they were set. Called by `PolicyReloader` before the new policy commits.
    func updateLockout(_ settings: LockoutPolicy) {
        lockout.withLock { $0.update(policy: settings) }
    }

    private func lockedOut(_ retryAfter: Duration) -> BreakGlassError {
        let seconds = Int(retryAfter.totalSeconds) + 1
        return BreakGlassError(.lockedOut, "too many failed logins; try again in \(seconds) s", retryAfterSeconds: seconds)
    }
}
