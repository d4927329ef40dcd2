import BreakGlassCore
import NIOCore
import NIOHTTP1

/// What the data path asks of the gateway: who may use which pathway (token, policy, session,
/// source, a place in the audit log), and the audit of what was let through. The gateway's
/// `PathwayProxy` answers; the connection and exchange only act on the answers.
package protocol PathwayAccess: AnyObject, Sendable {
    /// A credential checked and admitted: the header value and what it was admitted to.
    typealias Admitted = (credentials: String, admission: ProxyAdmission)

    /// Upstream connections: the pool, the connectors and their errors.
    var connector: UpstreamConnector { get }
    /// Places taken in the audit log at admission are used or given back through this.
    var audit: any AuditSink { get }

    /// The credentials of the previous request on this connection again: checks everything but
    /// the signature without leaving the event loop. Nil when a full `authorize` is needed.
    func reauthorize(
        credentials: String?, pathwayName: String, kind: Pathway.Kind, request: ProxyRequestLine?, channel: any Channel,
        cached: Admitted?
    ) -> Result<Admitted, BreakGlassError>?

    /// Checks the bearer token for `pathwayName`, the session, the pathway's kind and source
    /// blocks, and takes a place in the audit log for the record of what follows (the caller
    /// uses it, or gives it back with `audit.cancelReservation()`). Refusals are audited.
    func authorize(
        credentials: String?, header: String, pathwayName: String, kind: Pathway.Kind, request: ProxyRequestLine?,
        source: IPAddress?, channel: any Channel
    ) async -> Result<Admitted, BreakGlassError>

    /// One proxied HTTP request, in the place taken at admission (not awaited).
    func recordRequest(
        _ admission: ProxyAdmission, method: HTTPMethod, path: String, status: Int?, bytesIn: Int, bytesOut: Int,
        upstream: Duration?, total: Duration, outcome: String)

    /// A tunnel opened: durable before any byte passes; a place for its end is taken first.
    func recordTunnelOpened(_ admission: ProxyAdmission, mode: String) async throws

    /// A tunnel closed; `reserved`: its place was taken before.
    func recordTunnelClosed(
        _ admission: ProxyAdmission, mode: String, bytesIn: Int, bytesOut: Int, duration: Duration, ending: String, reserved: Bool)

    /// How a tunnel of `session` ended, or nil while the session is live.
    func sessionEnding(_ session: String) -> String?
}

/// A proxied request's line, for the check of a probe grant (`AccessPolicy`).
package struct ProxyRequestLine {
    package let head: HTTPRequestHead

    package init(_ head: HTTPRequestHead) {
        self.head = head
    }

    package var method: HTTPMethod { head.method }
    package var uri: String { head.uri }

    /// The request has a body, or asks the upstream to take it as another method (read only for
    /// probe sessions, so ordinary requests do not pay for the header lookups).
    package var carriesMore: Bool {
        ProxyHeaders.hasBody(head) || head.headers.contains(name: "x-http-method-override")
            || head.headers.contains(name: "x-http-method") || head.headers.contains(name: "x-method-override")
    }
}
