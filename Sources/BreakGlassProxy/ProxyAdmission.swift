import BreakGlassCore

/// A request or tunnel that was let through; a keep-alive connection's later requests with the
/// same token share it while nothing it was checked against changes.
package final class ProxyAdmission: Sendable {
    /// Who a verified token speaks for, before its pathway is looked up.
    package struct Claimant: Sendable {
        package var session: SessionInfo
        package var source: IPAddress?
        package var identity: ProxyHeaders.Identity

        package init(session: SessionInfo, source: IPAddress?, identity: ProxyHeaders.Identity) {
            self.session = session
            self.source = source
            self.identity = identity
        }
    }

    package let pathway: Pathway
    /// Who the token speaks for, kept as stored fields: the data path reads them on every request,
    /// and a computed copy of the session would retain and release its strings each time.
    package let session: SessionInfo
    package let source: IPAddress?
    package let identity: ProxyHeaders.Identity
    /// The `Host` value for the upstream, made once.
    package let upstreamHost: String
    /// Where this pathway's upstream connections go, as the pool knows it, made once.
    package let poolDestination: String
    /// The policy's and the session registry's numbers when the checks were made.
    package let policyGeneration: Int
    package let sessionGeneration: Int

    /// Who the token speaks for.
    package var claimant: Claimant { Claimant(session: session, source: source, identity: identity) }

    /// An admission to `pathway` for `claimant`, made under the given generations.
    package init(pathway: Pathway, claimant: Claimant, policyGeneration: Int, sessionGeneration: Int) {
        self.pathway = pathway
        self.session = claimant.session
        self.source = claimant.source
        self.identity = claimant.identity
        self.upstreamHost = Self.authority(pathway.upstream)
        self.poolDestination = UpstreamConnector.poolDestination(pathway)
        self.policyGeneration = policyGeneration
        self.sessionGeneration = sessionGeneration
    }

    /// `host:port` as a Host header value.
    package static func authority(_ upstream: Upstream) -> String {
        let host = upstream.host.contains(":") ? "[\(upstream.host)]" : upstream.host
        let defaultPort = upstream.scheme == .https ? 443 : 80
        return upstream.port == defaultPort ? host : "\(host):\(upstream.port)"
    }
}
