import BreakGlassCore
import BreakGlassHealth
import BreakGlassProxy
import Foundation
import NIOCore
import NIOHTTP1

/// The operators' API on the admin unix socket: list live sessions and revoke them. Whoever can
/// open the socket (its file permissions, 0600 by default) may use it.
///
/// - `GET /v1/admin/sessions`
/// - `POST /v1/admin/revoke` with `{"session": ID}`, `{"user": NAME}` or `{"all": true}`, and
///   optionally `"operator"` (who asks) and `"reason"`.
public struct AdminRouter: Sendable {
    let registry: SessionRegistry
    let monitor: HealthMonitor?

    /// A router over `registry`; without `monitor` the self-test, health and metrics paths answer `not_found`.
    public init(registry: SessionRegistry, monitor: HealthMonitor? = nil) {
        self.registry = registry
        self.monitor = monitor
    }

    struct SessionRow: Encodable {
        var session: String
        var user: String
        var pathway: String
        var issuedAt: Date
        var expiresAt: Date
        var connections: Int

        enum CodingKeys: String, CodingKey {
            case session, user, pathway, connections
            case issuedAt = "issued_at"
            case expiresAt = "expires_at"
        }
    }

    struct Revocation: Decodable {
        var session: String?
        var user: String?
        var all: Bool?
        var `operator`: String?
        var reason: String?
    }

    struct SelftestAnswer: Encodable {
        var round: ProbeRoundReport
        var health: HealthMonitor.Report
    }

    struct RevokeAnswer: Encodable {
        var revoked: [SessionRow]
    }

    /// The answer to an admin request; `not_found` for an unknown path.
    public func route(_ request: APIRequest) async -> APIResponse {
        switch request.path {
        case "/v1/admin/sessions":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            return .json(.ok, ["sessions": registry.liveSessionsWithConnections().map(Self.row)])
        case "/v1/admin/revoke":
            guard request.method == .POST else { return .methodNotAllowed(request, allowed: "POST") }
            return await revoke(request.body)
        case "/v1/admin/selftest":
            guard request.method == .POST else { return .methodNotAllowed(request, allowed: "POST") }
            guard let monitor else { return .error(BreakGlassError(.notFound, "this gateway runs no self-tests")) }
            let only = (try? JSONDecoder().decode([String: String].self, from: Data(request.body.readableBytesView)))?["pathway"]
            let report = await monitor.round(only: only)
            return .json(.ok, SelftestAnswer(round: report, health: monitor.report()))
        case "/v1/admin/health":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            guard let monitor else { return .error(BreakGlassError(.notFound, "this gateway keeps no health")) }
            return .json(.ok, monitor.report())
        case "/v1/admin/metrics":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            guard let monitor else { return .error(BreakGlassError(.notFound, "this gateway keeps no metrics")) }
            return StatusRouter.metrics(monitor)
        default:
            return .error(
                BreakGlassError(
                    .notFound,
                    "no route \(BoundedText.cut(request.path, bytes: 200)); use /v1/admin/sessions, /v1/admin/revoke, /v1/admin/selftest, /v1/admin/health or /v1/admin/metrics"
                ))
        }
    }

    private func revoke(_ body: ByteBuffer) async -> APIResponse {
        guard let revocation = try? JSONDecoder().decode(Revocation.self, from: Data(body.readableBytesView)) else {
            return .error(BreakGlassError(.invalidRequest, "send JSON: {\"session\": ID} or {\"user\": NAME} or {\"all\": true}"))
        }
        let chosen = [revocation.session != nil, revocation.user != nil, revocation.all == true].filter { $0 }.count
        guard chosen == 1 else {
            return .error(BreakGlassError(.invalidRequest, "name exactly one of session, user or all"))
        }
        let live = registry.liveSessionsWithConnections()
        let targets = live.filter { row in
            if let session = revocation.session { return row.info.session == session }
            if let user = revocation.user { return row.info.user == user }
            return true
        }
        if let session = revocation.session, targets.isEmpty {
            return .error(BreakGlassError(.notFound, "no live session \(BoundedText.cut(session, bytes: 64))"))
        }
        let actor = "operator " + BoundedText.cut(revocation.operator ?? "unnamed", bytes: 64) + " (admin socket)"
        let ended = await registry.end(
            targets.map(\.info.session), as: .revoked, by: actor, reason: revocation.reason.map { BoundedText.cut($0, bytes: 2000) })
        // Success only when every revocation is on the record: an operator must not believe a
        // revocation that a restart could forget.
        if !ended.unrecorded.isEmpty {
            return .error(
                BreakGlassError(
                    .auditUnavailable,
                    "the connections of \(ended.count) session(s) were cut, but the audit log could not record "
                        + "\(ended.unrecorded.count) revocation(s) (\(ended.unrecorded.prefix(8).map(\.session).joined(separator: ", "))): "
                        + "they hold until a restart; fix the audit log and revoke again", retryAfterSeconds: 5))
        }
        let endedIDs = Set(ended.sessions.map(\.session))
        return .json(.ok, RevokeAnswer(revoked: targets.filter { endedIDs.contains($0.info.session) }.map(Self.row)))
    }

    static func row(_ entry: (info: SessionRegistry.SessionInfo, connections: Int)) -> SessionRow {
        SessionRow(
            session: entry.info.session, user: entry.info.user, pathway: entry.info.pathway, issuedAt: entry.info.issuedAt,
            expiresAt: entry.info.expiresAt, connections: entry.connections)
    }
}
