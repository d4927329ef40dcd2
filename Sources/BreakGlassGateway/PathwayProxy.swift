import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassProxy
import BreakGlassTokens
import Foundation
import NIOCore
import NIOHTTP1

/// What the data path needs besides bytes: who may use which pathway (token, session, source),
/// connections to upstreams, and the audit of each request and tunnel.
public final class PathwayProxy: PathwayAccess {
    package typealias Admission = ProxyAdmission
    package typealias Claimant = ProxyAdmission.Claimant

    let runtime: GatewayRuntime
    /// Refusals without valid credentials, summarized per source (shared with the grant flow).
    let denials: DenialLedger
    /// The live sessions and their connections.
    public let registry: SessionRegistry
    package let audit: any AuditSink
    /// Upstream connections and their pool.
    package let connector = UpstreamConnector()
    /// Idle and in-use upstream connections.
    public var pool: UpstreamPool { connector.pool }
    let clock: any WallClock
    let metrics: GatewayMetrics?

    /// A data path for the sessions of `registry`, with an empty upstream pool.
    public init(
        runtime: GatewayRuntime, denials: DenialLedger, registry: SessionRegistry, audit: any AuditSink, clock: any WallClock,
        metrics: GatewayMetrics? = nil
    ) {
        self.runtime = runtime
        self.denials = denials
        self.registry = registry
        self.audit = audit
        self.clock = clock
        self.metrics = metrics
    }

    // MARK: authorization

    /// The credentials of the previous request on this connection again (the same header value):
    /// checks everything but the signature (the session, kind, source blocks, audit) without leaving
    /// the event loop. Nil when the credentials or pathway differ and a full `authorize` is needed.
    package func reauthorize(
        credentials: String?, pathwayName: String, kind: Pathway.Kind, request: ProxyRequestLine?, channel: any Channel,
        cached: (credentials: String, admission: Admission)?
    ) -> Result<(credentials: String, admission: Admission), BreakGlassError>? {
        guard let cached, let credentials, cached.credentials == credentials else { return nil }
        let admission = cached.admission
        guard admission.pathway.name == pathwayName else { return nil }
        if stillHolds(admission, kind: kind) { return .success(cached) }
        return admit(admission.claimant, pathwayName: pathwayName, credentials: credentials, kind: kind, request: request, channel: channel)
    }

    /// Whether an admission made on this connection holds for another request of `kind` without
    /// checking again: the policy and the sessions are as they were then (no reload, no session
    /// ended since), the grant has not expired, and the audit log gives a place for the record
    /// (taken last, when everything else holds). A probe session's request line is checked every time.
    private func stillHolds(_ admission: Admission, kind: Pathway.Kind) -> Bool {
        admission.pathway.kind == kind && admission.session.tag != .probe
            && admission.policyGeneration == runtime.store.generation && admission.sessionGeneration == registry.generation
            && clock.now() < admission.session.expiresAt && audit.reserve(kind == .http ? .request : .tunnelOpened)
    }

    /// Checks the bearer token for `pathwayName`, the session, the pathway's kind and source blocks,
    /// and takes a place in the audit log for the record of what follows (no audit, no access): the
    /// admission's holder uses it, or gives it back with `audit.cancelReservation()`. Refusals are
    /// audited.
    package func authorize(
        credentials: String?,
        header: String,
        pathwayName: String,
        kind: Pathway.Kind,
        request: ProxyRequestLine?,
        source: IPAddress?,
        channel: any Channel
    ) async -> Result<(credentials: String, admission: Admission), BreakGlassError> {
        guard let credentials, let token = BearerCredentials.token(credentials) else {
            return deny(
                BreakGlassError(.invalidToken, "send the grant token as \(header): Bearer TOKEN"), pathway: pathwayName, source: source)
        }
        let claims: GrantClaims
        do {
            claims = try await runtime.tokens.verify(token, audience: pathwayName, now: clock.now())
        } catch {
            return deny(error, pathway: pathwayName, source: source)
        }
        let grant = TokenAuthority.grant(from: claims)
        let claimant = Claimant(
            session: SessionRegistry.SessionInfo(grant: grant),
            source: source,
            identity: ProxyHeaders.Identity(user: grant.user, session: grant.session, clientAddress: source.map { "\($0)" })
        )
        return admit(claimant, pathwayName: pathwayName, credentials: credentials, kind: kind, request: request, channel: channel)
    }

    /// Decides with `AccessPolicy` (a value), records a refusal, then takes the session's and the
    /// audit log's part: the channel joins the session, and a place in the log is reserved.
    private func admit(
        _ claimant: Claimant, pathwayName name: String, credentials: String, kind: Pathway.Kind, request: ProxyRequestLine?,
        channel: any Channel
    ) -> Result<(credentials: String, admission: Admission), BreakGlassError> {
        // Read before the checks: a change while they run makes the next request check again.
        let (policyGeneration, sessionGeneration) = (runtime.store.generation, registry.generation)
        let probe = claimant.session.tag == .probe
        // The request line matters only to a probe grant: others do not pay for its header lookups.
        let line = probe ? request.map { AccessRequest.Line(method: $0.method.rawValue, uri: $0.uri, carriesMore: $0.carriesMore) } : nil
        let asked = AccessRequest(pathway: name, kind: kind, source: claimant.source, probe: probe, line: line)
        // The policy may have changed since the token was issued (reload).
        let pathway: Pathway
        switch AccessPolicy.evaluate(asked, under: runtime.store.current.policy) {
        case .deny(let error):
            // The token of a session that is not live is no valid credential whatever it asks for:
            // summarized per source however often it is replayed, like the registry's own refusal.
            return deny(
                error, pathway: name, source: claimant.source, session: claimant.session,
                summarized: registry.check(claimant.session) != nil)
        case .allow(let allowed):
            pathway = allowed
        }
        let admission = Admission(
            pathway: pathway, claimant: claimant, policyGeneration: policyGeneration, sessionGeneration: sessionGeneration)
        if let refusal = registry.admit(admission.session, channel: channel) {
            // A token of a session that is not live (released, revoked, never issued) is not valid
            // credentials: summarized like a request without any, however often it is replayed.
            return deny(refusal, admission: admission, summarized: true)
        }
        guard audit.reserve(kind == .http ? .request : .tunnelOpened) else {
            return deny(
                BreakGlassError(
                    .auditUnavailable, "the audit log cannot record this access, so it is refused (no audit, no access)",
                    retryAfterSeconds: 5),
                admission: admission)
        }
        return .success((credentials, admission))
    }

    private func deny(
        _ error: BreakGlassError, admission: Admission, summarized: Bool = false
    ) -> Result<(credentials: String, admission: Admission), BreakGlassError> {
        deny(error, pathway: admission.pathway.name, source: admission.source, session: admission.session, summarized: summarized)
    }

    /// Records a refusal: one by one for a live session, summarized per source (`DenialLedger`)
    /// without one or when `summarized`.
    private func deny(
        _ error: BreakGlassError, pathway: String, source: IPAddress?, session: SessionRegistry.SessionInfo? = nil,
        summarized: Bool = false
    ) -> Result<(credentials: String, admission: Admission), BreakGlassError> {
        var fields: [String: AuditValue] = [
            "pathway": .string(BoundedText.cut(pathway, bytes: GrantRequest.Limits.pathwayLength)),
            "code": .string(error.code.rawValue),
            "message": .string(error.message),
        ]
        fields["source"] = source.map { .string("\($0)") }
        fields["session"] = session.map { .string($0.session) }
        fields["user"] = session.map { .string($0.user) }
        let event = AuditEvent(kind: .requestDenied, time: clock.now(), fields: fields)
        if session == nil || summarized {
            // Without valid credentials anyone can send refusals: they are summarized per source
            // and interval, so that they cannot fill the log.
            denials.count(event, address: source)
        } else {
            audit.submit(DenialLedger.bounded(event))
        }
        return .failure(error)
    }

    // MARK: upstreams

    // MARK: audit

    /// One proxied HTTP request, recorded with the group commit (not awaited).
    package func recordRequest(
        _ admission: Admission, method: HTTPMethod, path: String, status: Int?, bytesIn: Int, bytesOut: Int,
        upstream: Duration?, total: Duration, outcome: String
    ) {
        // Room for every field at once: growing a dictionary re-hashes its keys.
        var fields = [String: AuditValue](minimumCapacity: 14)
        fields["session"] = .string(admission.session.session)
        fields["user"] = .string(admission.session.user)
        fields["pathway"] = .string(admission.pathway.name)
        fields["method"] = .string(method.rawValue)
        fields["path"] = .string(path)
        fields["bytes_in"] = .integer(Int64(bytesIn))
        fields["bytes_out"] = .integer(Int64(bytesOut))
        fields["total_us"] = .integer(Int64(total.totalMicroseconds))
        fields["outcome"] = .string(outcome)
        fields["status"] = status.map { .integer(Int64($0)) }
        fields["upstream_us"] = upstream.map { .integer(Int64($0.totalMicroseconds)) }
        fields["source"] = admission.identity.clientAddress.map { .string($0) }
        fields["tag"] = admission.session.tag.map { .string($0.rawValue) }
        // Its place was taken at admission: the log cannot refuse it now.
        audit.submit(AuditEvent(kind: .request, time: clock.now(), fields: fields), reserved: true)
        metrics?.request(pathway: admission.pathway.name, status: status, bytesIn: bytesIn, bytesOut: bytesOut)
    }

    /// A tunnel opened: recorded durably before any byte passes, in the place taken at admission;
    /// a place for its `tunnel.closed` is taken first (refused: the tunnel is refused).
    package func recordTunnelOpened(_ admission: Admission, mode: String) async throws {
        guard audit.reserve(.tunnelClosed) else {
            audit.cancelReservation()
            throw AuditUnavailableError(reason: "no place for the tunnel's end")
        }
        var fields: [String: AuditValue] = [
            "session": .string(admission.session.session),
            "user": .string(admission.session.user),
            "pathway": .string(admission.pathway.name),
            "upstream": .string("\(admission.pathway.upstream)"),
            "mode": .string(mode),
        ]
        fields["source"] = admission.source.map { .string("\($0)") }
        fields["tag"] = admission.session.tag.map { .string($0.rawValue) }
        do {
            try await audit.record(AuditEvent(kind: .tunnelOpened, time: clock.now(), fields: fields), reserved: true)
        } catch {
            audit.cancelReservation()
            throw error
        }
    }

    /// `reserved`: the record's place was taken before (a CONNECT tunnel's at admission).
    package func recordTunnelClosed(
        _ admission: Admission, mode: String, bytesIn: Int, bytesOut: Int, duration: Duration, ending: String, reserved: Bool
    ) {
        metrics?.tunnelClosed(pathway: admission.pathway.name, bytesIn: bytesIn, bytesOut: bytesOut)
        audit.submit(
            AuditEvent(
                kind: .tunnelClosed,
                time: clock.now(),
                fields: [
                    "session": .string(admission.session.session),
                    "user": .string(admission.session.user),
                    "pathway": .string(admission.pathway.name),
                    "mode": .string(mode),
                    "bytes_in": .integer(Int64(bytesIn)),
                    "bytes_out": .integer(Int64(bytesOut)),
                    "duration_ms": .integer(Int64(duration.totalMilliseconds)),
                    "ending": .string(ending),
                ]
            ),
            reserved: reserved)
    }

    /// How a tunnel of `session` ended, as far as the registry knows, or nil when it is still live.
    package func sessionEnding(_ session: String) -> String? {
        registry.endingDescription(session)
    }
}
