import BreakGlassAPI
import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassProxy
import BreakGlassTokens
import Foundation
import NIOHTTP1

/// `GET /v1/audit/trail`: a session's own audit records, each with its inclusion proof against a
/// checkpoint signed for the answer. The grant token (even released) proves which session; it
/// must not have expired.
public struct AuditTrail: Sendable {
    let runtime: GatewayRuntime
    let auditLog: AuditLog
    let clock: any WallClock

    /// Trails from `auditLog` for sessions whose tokens the token authority in force verifies.
    public init(runtime: GatewayRuntime, auditLog: AuditLog, clock: any WallClock) {
        self.runtime = runtime
        self.auditLog = auditLog
        self.clock = clock
    }

    func answer(authorization: String?) async -> APIResponse {
        guard let authorization, let token = BearerCredentials.token(authorization) else {
            return .error(BreakGlassError(.invalidToken, "send the grant token as Authorization: Bearer TOKEN"))
        }
        let grant: Grant
        do {
            grant = TokenAuthority.grant(from: try await runtime.tokens.verify(token, audience: nil, now: clock.now()))
        } catch {
            return .error(error)
        }
        guard grant.tag != .probe else {
            return .error(BreakGlassError(.forbidden, "a probe grant allows only its pathway's probe"))
        }
        let session = grant.session
        do {
            let inclusion = try await auditLog.proveRecent(since: grant.issuedAt.addingTimeInterval(-5)) { record in
                record.event.fields["session"] == .string(session)
            }
            let entries = inclusion.entries.map {
                AuditTrailAnswer.Entry(
                    index: $0.index, record: String(decoding: $0.bytes, as: UTF8.self),
                    proof: $0.proof.map { Data($0).base64EncodedString() })
            }
            return .json(
                .ok,
                AuditTrailAnswer(
                    session: session, pathway: grant.pathway, checkpoint: inclusion.checkpoint,
                    verifierKey: auditLog.signer.verifier.keyString, records: entries),
                headers: [("Cache-Control", "no-store")])
        } catch {
            if error.code == .busy {
                return .error(
                    BreakGlassError(.unavailable, "the gateway is proving other audit trails; try again shortly", retryAfterSeconds: 1))
            }
            return .error(
                BreakGlassError(.auditUnavailable, "the audit trail cannot be proven now: \(error.message)", retryAfterSeconds: 5))
        }
    }
}
