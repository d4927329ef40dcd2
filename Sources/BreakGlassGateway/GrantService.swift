import BreakGlassAPI
import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassPAM
import BreakGlassProxy
import BreakGlassTokens
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The grant flow: validate → lockout → PAM → policy → sign → audit (durable) → answer.
///
/// Every decision, issued or denied, goes to the audit sink; a grant is answered only after its
/// `grant.issued` event is recorded. Refusals decided before PAM ran (malformed bodies, shape errors,
/// lockouts) are summarized per source by `denials`; refusals after PAM ran are recorded one by one.
public final class GrantService: Sendable {
    private let runtime: GatewayRuntime
    private let lockout: Mutex<LockoutTracker>
    private let pam: PAMAuthenticator
    private let audit: any AuditSink
    private let registry: SessionRegistry?
    private let clock: any WallClock
    private let logger: Logger
    private let metrics: GatewayMetrics?
    private let alerts: AlertDispatcher?
    /// Refusals without valid credentials, summarized per source and interval
    /// (`gateway.limits.denial_interval`); the proxy counts its own there too.
    private let denials: DenialLedger

    /// A grant service reading the policy, TLS and token key in force from `runtime`.
    public init(
        runtime: GatewayRuntime,
        denials: DenialLedger,
        pam: PAMAuthenticator,
        audit: any AuditSink,
        registry: SessionRegistry? = nil,
        clock: any WallClock = SystemWallClock(),
        metrics: GatewayMetrics? = nil,
        alerts: AlertDispatcher? = nil,
        logger: Logger
    ) {
        self.runtime = runtime
        self.denials = denials
        self.metrics = metrics
        self.alerts = alerts
        self.lockout = Mutex(LockoutTracker(policy: runtime.store.current.policy.gateway.lockout))
        self.pam = pam
        self.audit = audit
        self.registry = registry
        self.clock = clock
        self.logger = logger
    }

    private var store: PolicyStore { runtime.store }
    private var tokens: TokenAuthority { runtime.tokens }

    // MARK: routes

    /// `POST /v1/grants`.
    public func requestGrant(body: ByteBuffer, source: IPAddress?) async -> APIResponse {
        let started = ContinuousClock.now
        let sourceText = source.map { "\($0)" }
        let input: GrantRequestBody
        do {
            input = try GrantRequestBody.decode(body)
        } catch {
            return refuse(error, user: nil, source: source, pathway: nil, reason: nil, ticket: nil)
        }
        let loaded = store.current
        var duration: Duration?
        if let text = input.duration {
            guard let parsed = Duration(policyText: text) else {
                let error = BreakGlassError(
                    .invalidRequest, "duration \"\(BoundedText.cut(text, bytes: 40))\" is not a duration (write e.g. 15m or 1h)")
                return refuse(error, input: input, source: source)
            }
            duration = parsed
        }
        var tag: Grant.Tag?
        if let text = input.tag {
            guard text == Grant.Tag.drill.rawValue else {
                return refuse(
                    BreakGlassError(
                        .invalidRequest, "tag \"\(BoundedText.cut(text, bytes: 40))\" is not accepted here; the only tag is drill"),
                    input: input,
                    source: source)
            }
            tag = .drill
        }
        let request = GrantRequest(
            user: input.user,
            pathway: input.pathway,
            reason: input.reason,
            ticket: input.ticket,
            duration: duration,
            source: source
        )
        if let problem = request.shapeError() {
            return refuse(problem, input: input, source: source)
        }
        // Refused before PAM and the lockout count, so that nobody can lock the self-test out.
        if loaded.policy.probes?.user == request.user {
            let error = BreakGlassError(.forbidden, "user \(request.user) is the probe identity: it can get probe grants only")
            return refuse(error, input: input, source: source)
        }
        // A misspelled pathway must not use up the one-time code: it is refused before PAM, with the
        // closest name. Only where the listener shows health, which lists the pathways anyway; with
        // `gateway.status` elsewhere, names are told to authenticated users only (after PAM).
        if loaded.policy.pathways[request.pathway] == nil, loaded.policy.gateway.status == .listener {
            let suggestion = loaded.policy.closestPathway(to: request.pathway).map { "; did you mean \"\($0)\"?" } ?? ""
            return refuse(
                BreakGlassError(.unknownPathway, "no pathway named \"\(request.pathway)\"\(suggestion)"), input: input, source: source)
        }
        let authentication: (amr: [String], timing: [String])
        switch await login(input, source: source, started: started) {
        case .refused(let error): return refuse(error, input: input, source: source)
        case .failed(let error): return await deny(error, input: input, source: sourceText)
        case .authenticated(let amr, let timing): authentication = (amr, timing)
        }
        // Decided under the policy in force now, after PAM: a reload during the login applies to it.
        let decisionGeneration = store.generation
        let decidedUnder = store.current
        let terms: GrantTerms
        switch decidedUnder.policy.decide(request) {
        case .deny(let error):
            return await deny(error, input: input, source: sourceText)
        case .allow(let allowed):
            terms = allowed
        }
        let issuedAt = clock.now()
        let grant = Grant(
            session: Grant.newSessionID(),
            user: terms.user,
            pathway: terms.pathway,
            reason: terms.reason,
            ticket: terms.ticket,
            issuedAt: issuedAt,
            expiresAt: issuedAt.addingTimeInterval(TimeInterval(terms.duration.totalMilliseconds) / 1000),
            amr: authentication.amr,
            source: sourceText,
            tag: tag
        )
        let token: String
        switch await issue(grant) {
        case .failure(let error):
            return error.code == .auditUnavailable ? .error(error) : await deny(error, input: input, source: sourceText)
        case .success(let signed):
            token = signed
        }
        // A reload between the decision and the tracking reviewed the live sessions without this
        // one: it is decided again now, and not handed out if the policy in force ended it.
        if store.generation != decisionGeneration {
            await reviewSessions(under: store.current.policy, previous: decidedUnder.policy)
            if registry?.isLive(grant.session) == false {
                return .error(BreakGlassError(.forbidden, "the policy was reloaded during the login and no longer allows this grant"))
            }
        }
        let timing = (authentication.timing + ["total;dur=\(Self.milliseconds(started.duration(to: .now)))"]).joined(separator: ", ")
        return .json(
            .created, GrantAnswer(grant: grant, token: token, now: issuedAt, kind: decidedUnder.policy.pathways[grant.pathway]?.kind),
            headers: [("Server-Timing", timing), ("Cache-Control", "no-store")])
    }

    /// `POST /v1/probe/grants`: the gateway's own self-test logs in (a real PAM login) and gets one
    /// short grant per pathway it probes, tagged `probe`: such a grant allows nothing but the
    /// pathway's probe. Only the `probes.user` identity may ask.
    public func requestProbeGrants(body: ByteBuffer, source: IPAddress?) async -> APIResponse {
        let started = ContinuousClock.now
        let sourceText = source.map { "\($0)" }
        let input: GrantRequestBody
        do {
            input = try GrantRequestBody.decode(body, probe: true)
        } catch {
            return refuse(error, user: nil, source: source, pathway: nil, reason: nil, ticket: nil)
        }
        let policy = store.current.policy
        guard let probes = policy.probes else {
            return refuse(BreakGlassError(.notFound, "this gateway has no probes section"), input: input, source: source)
        }
        guard input.user == probes.user else {
            return refuse(BreakGlassError(.forbidden, "only the probe identity may ask for probe grants"), input: input, source: source)
        }
        // The self-test connects from this machine: from anywhere else probe credentials are misused.
        let own = probes.connect.flatMap { IPAddress($0.host) }
        guard let source, source.isLoopback || source == own else {
            alerts?.fireOnce(
                Alert(
                    kind: "probe.misuse", time: clock.now(),
                    fields: [
                        "source": .string(sourceText ?? "unknown"), "detail": .string("probe grants were asked for from another machine"),
                    ]),
                every: .seconds(60))
            return refuse(
                BreakGlassError(.forbidden, "probe grants are for the gateway's own self-test, from this machine"), input: input,
                source: source)
        }
        var pathways: [Pathway] = []
        for name in Set(input.pathways).sorted() {
            guard let pathway = policy.pathways[name], pathway.probe != .disabled else {
                return refuse(
                    BreakGlassError(.unknownPathway, "no probed pathway named \"\(BoundedText.cut(name, bytes: 64))\""), input: input,
                    source: source)
            }
            pathways.append(pathway)
        }
        let amr: [String]
        switch await login(input, source: source, started: started) {
        case .refused(let error): return refuse(error, input: input, source: source)
        case .failed(let error): return await deny(error, input: input, source: sourceText)
        case .authenticated(let methods, _): amr = methods
        }
        let issuedAt = clock.now()
        let grants = pathways.map { pathway in
            Grant(
                session: Grant.newSessionID(), user: probes.user, pathway: pathway.name, reason: "probe round", ticket: nil,
                issuedAt: issuedAt,
                expiresAt: issuedAt.addingTimeInterval(TimeInterval(probes.grantDuration.totalMilliseconds) / 1000), amr: amr,
                source: sourceText, tag: .probe)
        }
        // Signed and recorded together, so that one group commit covers the round's grants.
        let outcomes = await withTaskGroup(of: (Int, Result<String, BreakGlassError>).self) { group in
            for (index, grant) in grants.enumerated() { group.addTask { (index, await self.issue(grant)) } }
            var outcomes: [Int: Result<String, BreakGlassError>] = [:]
            for await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        var issued: [ProbeGrantsAnswer.Grant] = []
        var failure: BreakGlassError?
        for (index, grant) in grants.enumerated() {
            switch outcomes[index] {
            case .success(let token):
                issued.append(
                    ProbeGrantsAnswer.Grant(pathway: grant.pathway, session: grant.session, token: token, expiresAt: grant.expiresAt))
            case .failure(let error):
                failure = failure ?? error
            case nil:
                failure = failure ?? BreakGlassError(.unavailable, "a probe grant was not issued")
            }
        }
        if let failure {
            // All or nothing: grants already issued end now rather than linger unused.
            await registry?.end(issued.map(\.session), as: .released, by: "the gateway (probe round refused)")
            return .error(failure)
        }
        logger.info("probe grants issued", metadata: ["pathways": "\(issued.count)", "source": "\(sourceText ?? "")"])
        return .json(.created, ProbeGrantsAnswer(grants: issued), headers: [("Cache-Control", "no-store")])
    }

    /// How a login ended.
    private enum LoginOutcome {
        /// PAM accepted the user: the methods used and Server-Timing entries.
        case authenticated(amr: [String], timing: [String])
        /// Refused before PAM gave a verdict (shape, lockout, busy, broken): summarized per source.
        case refused(BreakGlassError)
        /// Refused by PAM's verdict: recorded on its own (the lockout and the failure delay pace it).
        case failed(BreakGlassError)
    }

    /// Checks the secrets' shape, the lockout and PAM; a user whose logins failed often lately (from
    /// any sources) waits first, without holding a PAM worker. Failures take at least `failure_delay`.
    private func login(_ input: GrantRequestBody, source: IPAddress?, started: ContinuousClock.Instant) async -> LoginOutcome {
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

    /// Signs the token, records `grant.issued` durably (no audit, no access), tracks the session,
    /// and tells people (alert, metrics, log). Probe grants raise no alert.
    private func issue(_ grant: Grant) async -> Result<String, BreakGlassError> {
        let token: String
        do {
            token = try await tokens.issue(grant)
        } catch {
            logger.error("token signing failed", metadata: ["error": "\(error)"])
            return .failure(BreakGlassError(.unavailable, "the gateway could not sign a token"))
        }
        do {
            try await audit.record(.grantIssued(grant, tokenSHA256: TokenAuthority.tokenHash(token)))
        } catch {
            logger.critical("audit failed; grant withheld", metadata: ["session": "\(grant.session)", "error": "\(error)"])
            alerts?.fireOnce(
                Alert(
                    kind: "audit.failed", time: clock.now(),
                    fields: ["detail": .string("a grant was withheld because the audit log cannot record it: \(error)")]),
                every: .seconds(60))
            return .failure(
                BreakGlassError(
                    .auditUnavailable, "the audit log cannot record this grant, so it is not issued (no audit, no access)",
                    retryAfterSeconds: 5))
        }
        registry?.track(SessionRegistry.SessionInfo(grant: grant))
        metrics?.grantIssued(pathway: grant.pathway, tag: grant.tag)
        if grant.tag != .probe {
            alerts?.fire(.grantIssued(grant))
            logger.notice(
                "grant issued",
                metadata: [
                    "session": "\(grant.session)", "user": "\(grant.user)", "pathway": "\(grant.pathway)",
                    "expires_at": "\(AuditValue.time(grant.expiresAt))", "tag": "\(grant.tag?.rawValue ?? "")",
                ])
        }
        return .success(token)
    }

    /// `GET /v1/grants/current`: the grant that the bearer token describes, and its session's state.
    public func currentGrant(authorization: String?) async -> APIResponse {
        guard let authorization, let token = BearerCredentials.token(authorization) else {
            return .error(BreakGlassError(.invalidToken, "send the grant token as Authorization: Bearer TOKEN"))
        }
        do {
            let claims = try await tokens.verify(token, audience: nil, now: clock.now())
            let grant = TokenAuthority.grant(from: claims)
            var answer = GrantAnswer(grant: grant, token: nil, now: clock.now())
            // The session's real state: a released or revoked grant's token still verifies until it expires.
            switch registry?.standing(SessionRegistry.SessionInfo(grant: grant)) ?? .live {
            case .live:
                answer.state = "active"
            case .ended(let ending):
                answer.state = ending.rawValue
                answer.expiresInSeconds = 0
            case .refused(let error):
                return .error(error)
            }
            return .json(.ok, answer, headers: [("Cache-Control", "no-store")])
        } catch {
            return .error(error)
        }
    }

    /// `DELETE /v1/grants/SESSION`: the holder ends the grant early; its connections are cut.
    public func releaseGrant(session: String, authorization: String?) async -> APIResponse {
        guard let authorization, let token = BearerCredentials.token(authorization) else {
            return .error(BreakGlassError(.invalidToken, "send the grant token as Authorization: Bearer TOKEN"))
        }
        let claims: GrantClaims
        do {
            claims = try await tokens.verify(token, audience: nil, now: clock.now())
        } catch {
            return .error(error)
        }
        let grant = TokenAuthority.grant(from: claims)
        guard grant.session == session else {
            return .error(BreakGlassError(.forbidden, "this token belongs to another session; a grant can only release itself"))
        }
        guard let registry else {
            return .error(BreakGlassError(.unavailable, "this gateway does not track sessions"))
        }
        // Only a session this gateway issued, to this user, can be released: a signature alone is
        // not the authority (a forged or replayed token must not end someone else's session).
        if let refusal = registry.check(SessionRegistry.SessionInfo(grant: grant)) { return .error(refusal) }
        let ended = await registry.end([session], as: .released, by: grant.user)
        guard !ended.sessions.isEmpty else {
            return .error(BreakGlassError(.invalidToken, "the grant has already ended"))
        }
        if !ended.unrecorded.isEmpty {
            return .error(
                BreakGlassError(
                    .auditUnavailable, "the grant's connections were cut, but the audit log could not record its release",
                    retryAfterSeconds: 5))
        }
        return .json(.ok, ReleaseAnswer(session: session, pathway: grant.pathway, released: true), headers: [("Cache-Control", "no-store")])
    }

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

    /// `GET /.well-known/jwks.json`.
    public func jwks() -> APIResponse {
        APIResponse(status: .ok, headers: [("Cache-Control", "max-age=300")], body: ByteBuffer(bytes: tokens.jwksJSON))
    }

    // MARK: reload

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

    // MARK: helpers

    /// Records a refusal decided after PAM ran, on its own (string fields bounded).
    private func deny(_ error: BreakGlassError, input: GrantRequestBody, source: String?) async -> APIResponse {
        let event = denial(error, user: input.user, source: source, pathway: input.pathway, reason: input.reason, ticket: input.ticket)
        do {
            try await audit.record(event)
        } catch {
            logger.critical("audit failed for a denial", metadata: ["error": "\(error)"])
        }
        return counted(error, pathway: input.pathway)
    }

    /// Counts a refusal decided before PAM ran (no valid credentials) in the per-source summary.
    private func refuse(_ error: BreakGlassError, input: GrantRequestBody, source: IPAddress?) -> APIResponse {
        refuse(error, user: input.user, source: source, pathway: input.pathway, reason: input.reason, ticket: input.ticket)
    }

    private func refuse(
        _ error: BreakGlassError, user: String?, source: IPAddress?, pathway: String?, reason: String?, ticket: String?
    ) -> APIResponse {
        let event = denial(error, user: user, source: source.map { "\($0)" }, pathway: pathway, reason: reason, ticket: ticket)
        denials.count(event, address: source)
        return counted(error, pathway: pathway)
    }

    /// A `grant.denied` event with every string field at most `DenialLedger.fieldLimit` bytes.
    private func denial(
        _ error: BreakGlassError, user: String?, source: String?, pathway: String?, reason: String?, ticket: String?
    ) -> AuditEvent {
        DenialLedger.bounded(
            AuditEvent.grantDenied(
                time: clock.now(),
                user: user.map { String($0.prefix(GrantRequest.Limits.userLength)) },
                source: source,
                pathway: pathway.map { String($0.prefix(GrantRequest.Limits.pathwayLength)) },
                reason: reason,
                ticket: ticket,
                error: error))
    }

    private func counted(_ error: BreakGlassError, pathway: String?) -> APIResponse {
        let known = pathway.flatMap { store.current.policy.pathways[$0] != nil ? $0 : nil }
        metrics?.grantDenied(pathway: known, code: error.code)
        return .error(error)
    }

    private func lockedOut(_ retryAfter: Duration) -> BreakGlassError {
        let seconds = Int(retryAfter.totalSeconds) + 1
        return BreakGlassError(.lockedOut, "too many failed logins; try again in \(seconds) s", retryAfterSeconds: seconds)
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.3f", Double(duration.totalMicroseconds) / 1000)
    }
}
