import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassProxy
import BreakGlassTokens
import NIOCore
import NIOHTTP1

/// Maps API requests to the grant service, the health monitor and the audit log; serves the token
/// authority's key set itself.
public struct APIRouter: Sendable {
    let grants: GrantService
    let runtime: GatewayRuntime
    let monitor: HealthMonitor?
    let trail: AuditTrail?

    /// A router over `grants`; without `monitor` or `trail` their paths answer `not_found`.
    public init(grants: GrantService, runtime: GatewayRuntime, monitor: HealthMonitor? = nil, trail: AuditTrail? = nil) {
        self.grants = grants
        self.runtime = runtime
        self.monitor = monitor
        self.trail = trail
    }

    /// The answer to an API request; `not_found` for an unknown path.
    public func route(_ request: APIRequest) async -> APIResponse {
        switch request.path {
        case "/v1/grants":
            guard request.method == .POST else { return .methodNotAllowed(request, allowed: "POST") }
            return await grants.requestGrant(body: request.body, source: request.source)
        case "/v1/grants/current":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            return await grants.currentGrant(authorization: request.headers.first(name: "authorization"))
        case let path where path.hasPrefix("/v1/grants/") && path.count > "/v1/grants/".count:
            guard request.method == .DELETE else { return .methodNotAllowed(request, allowed: "DELETE") }
            let session = String(path.dropFirst("/v1/grants/".count))
            return await grants.releaseGrant(session: session, authorization: request.headers.first(name: "authorization"))
        case "/v1/probe/grants":
            guard request.method == .POST else { return .methodNotAllowed(request, allowed: "POST") }
            return await grants.requestProbeGrants(body: request.body, source: request.source)
        case "/v1/health", "/metrics":
            switch runtime.store.current.policy.gateway.status {
            case .listener:
                return StatusRouter(monitor: monitor).route(request) ?? .error(BreakGlassError(.notFound, "no route"))
            case .admin:
                return .error(BreakGlassError(.notFound, "\(request.path) is served on the admin socket only (gateway.status: admin)"))
            case .address(let address):
                return .error(BreakGlassError(.notFound, "\(request.path) is served at http://\(address) (gateway.status)"))
            }
        case "/v1/audit/trail":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            guard let trail else { return .error(BreakGlassError(.notFound, "this gateway keeps no durable audit log")) }
            return await trail.answer(authorization: request.headers.first(name: "authorization"))
        case "/.well-known/jwks.json":
            guard request.method == .GET else { return .methodNotAllowed(request, allowed: "GET") }
            return jwks()
        default:
            return .error(BreakGlassError(.notFound, "no route \(BoundedText.cut(request.path, bytes: 200))"))
        }
    }

    /// `GET /.well-known/jwks.json`: the key set of the token authority in force.
    func jwks() -> APIResponse {
        APIResponse(status: .ok, headers: [("Cache-Control", "max-age=300")], body: ByteBuffer(bytes: runtime.tokens.jwksJSON))
    }
}
