import BreakGlassAPI
import BreakGlassCore
import BreakGlassProxy
import BreakGlassTokens
import Foundation
import NIOHTTP1

/// The routes a grant's holder calls with its token: the current grant, and its release.
extension GrantService {
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
}
