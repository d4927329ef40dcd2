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
///
/// Its parts: the grant request and issuance here; the probes' grants in `GrantService+ProbeGrants`;
/// the login (lockout, PAM) in `+Login`; the routes a token calls in `+TokenRoutes`. The policy's
/// reload is `PolicyReloader`'s, the review of live sessions `SessionRegistry.review(under:previous:)`.
public final class GrantService: Sendable {
    // Internal, not private, where the extensions in the files next to this one use them.
    let runtime: GatewayRuntime
    let lockout: Mutex<LockoutTracker>
    let pam: PAMAuthenticator
    let audit: any AuditSink
    let registry: SessionRegistry?
    let clock: any WallClock
    let logger: Logger
    let metrics: GatewayMetrics?
    let alerts: AlertDispatcher?
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

    var store: PolicyStore { runtime.store }
    var tokens: TokenAuthority { runtime.tokens }

    // MARK: the grant request

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
            await registry?.review(under: store.current.policy, previous: decidedUnder.policy)
            if registry?.isLive(grant.session) == false {
                return .error(BreakGlassError(.forbidden, "the policy was reloaded during the login and no longer allows this grant"))
            }
        }
        let timing = (authentication.timing + ["total;dur=\(Self.milliseconds(started.duration(to: .now)))"]).joined(separator: ", ")
        return .json(
            .created, GrantAnswer(grant: grant, token: token, now: issuedAt, kind: decidedUnder.policy.pathways[grant.pathway]?.kind),
            headers: [("Server-Timing", timing), ("Cache-Control", "no-store")])
    }

    /// Signs the token, records `grant.issued` durably (no audit, no access), tracks the session,
    /// and tells people (alert, metrics, log). Probe grants raise no alert.
    func issue(_ grant: Grant) async -> Result<String, BreakGlassError> {
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

    // MARK: helpers

    /// Records a refusal decided after PAM ran, on its own (string fields bounded).
    func deny(_ error: BreakGlassError, input: GrantRequestBody, source: String?) async -> APIResponse {
        let event = denial(error, user: input.user, source: source, pathway: input.pathway, reason: input.reason, ticket: input.ticket)
        do {
            try await audit.record(event)
        } catch {
            logger.critical("audit failed for a denial", metadata: ["error": "\(error)"])
        }
        return counted(error, pathway: input.pathway)
    }

    /// Counts a refusal decided before PAM ran (no valid credentials) in the per-source summary.
    func refuse(_ error: BreakGlassError, input: GrantRequestBody, source: IPAddress?) -> APIResponse {
        refuse(error, user: input.user, source: source, pathway: input.pathway, reason: input.reason, ticket: input.ticket)
    }

    func refuse(
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

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.3f", Double(duration.totalMicroseconds) / 1000)
    }
}
