import Foundation

/// A named internal service that emergency access can be granted to.
public struct Pathway: Sendable, Equatable {
    /// How traffic reaches the upstream.
    public enum Kind: String, Sendable, CaseIterable {
        /// HTTP reverse proxy.
        case http
        /// TCP tunnel over HTTP CONNECT.
        case tcp
    }

    /// The pathway's name, as clients ask for it.
    public var name: String
    /// Whether the pathway is an HTTP proxy or a TCP tunnel.
    public var kind: Kind
    /// Where the traffic goes.
    public var upstream: Upstream
    /// Users who may get grants.
    public var allowUsers: Set<String>
    /// Groups whose members may get grants.
    public var allowGroups: Set<String>
    /// Grant length when the request names none.
    public var defaultDuration: Duration
    /// Longest grant the pathway gives.
    public var maxDuration: Duration
    /// When set, grants need a ticket matching this pattern.
    public var requireTicket: TicketPattern?
    /// When set, grants and traffic are accepted only from these blocks.
    public var sourceCIDRs: [CIDRBlock]?
    /// How the gateway talks to the upstream.
    public var proxy: ProxySettings
    /// What the self-test does on this pathway.
    public var probe: PathwayProbe

    /// A pathway with the given settings; `probe` nil takes the standard probe for `kind`.
    public init(
        name: String,
        kind: Kind,
        upstream: Upstream,
        allowUsers: Set<String>,
        allowGroups: Set<String>,
        defaultDuration: Duration,
        maxDuration: Duration,
        requireTicket: TicketPattern? = nil,
        sourceCIDRs: [CIDRBlock]? = nil,
        proxy: ProxySettings = ProxySettings(),
        probe: PathwayProbe? = nil
    ) {
        self.name = name
        self.kind = kind
        self.upstream = upstream
        self.allowUsers = allowUsers
        self.allowGroups = allowGroups
        self.defaultDuration = defaultDuration
        self.maxDuration = maxDuration
        self.requireTicket = requireTicket
        self.sourceCIDRs = sourceCIDRs
        self.proxy = proxy
        self.probe = probe ?? .standard(for: kind)
    }
}

/// Per-pathway limits and upstream trust.
public struct ProxySettings: Sendable, Equatable {
    /// Longest wait for a TCP (and TLS) connection to the upstream.
    public var connectTimeout: Duration
    /// Longest wait for an HTTP upstream's response head once the request is sent.
    public var responseTimeout: Duration
    /// Most connections open to the upstream at once (in use or idle).
    public var maxConnections: Int
    /// Most upstream connections one session may have in use at once.
    public var maxConnectionsPerSession: Int
    /// CA bundle (PEM) that an https upstream's certificate must chain to; nil: the system roots.
    public var upstreamCA: String?
    /// Whether `request` audit events keep query values (otherwise only the names).
    public var auditQuery: Bool

    /// Settings with the given limits; `maxConnectionsPerSession` nil takes `defaultShare(of:)`.
    public init(
        connectTimeout: Duration = .seconds(5),
        responseTimeout: Duration = .seconds(60),
        maxConnections: Int = 64,
        maxConnectionsPerSession: Int? = nil,
        upstreamCA: String? = nil,
        auditQuery: Bool = false
    ) {
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerSession = maxConnectionsPerSession ?? Self.defaultShare(of: maxConnections)
        self.upstreamCA = upstreamCA
        self.auditQuery = auditQuery
    }
}

extension ProxySettings {
    /// One session's default share of a pathway's upstream connections: a quarter, at least one.
    public static func defaultShare(of maxConnections: Int) -> Int {
        max(1, maxConnections / 4)
    }
}

/// Where a pathway's traffic goes: `http://host:port`, `https://host:port` or `tcp://host:port` / `host:port`.
public struct Upstream: Sendable, Equatable, CustomStringConvertible {
    /// The upstream's URL scheme.
    public enum Scheme: String, Sendable {
        case http, https, tcp
    }

    /// How the gateway connects: plain HTTP, HTTPS or raw TCP.
    public var scheme: Scheme
    /// Host name or address of the upstream.
    public var host: String
    /// TCP port of the upstream.
    public var port: Int
    /// Path prefix for HTTP upstreams ("" when none).
    public var basePath: String

    /// An upstream with the given parts.
    public init(scheme: Scheme, host: String, port: Int, basePath: String = "") {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
    }

    /// Parses an upstream for a pathway kind; nil with no usable host and port.
    public init?(_ text: String, kind: Pathway.Kind) {
        var rest = Substring(text)
        let scheme: Scheme
        if let range = rest.range(of: "://") {
            guard let parsed = Scheme(rawValue: String(rest[..<range.lowerBound]).lowercased()) else { return nil }
            scheme = parsed
            rest = rest[range.upperBound...]
        } else {
            guard kind == .tcp else { return nil }
            scheme = .tcp
        }
        switch (kind, scheme) {
        case (.http, .http), (.http, .https), (.tcp, .tcp): break
        default: return nil
        }
        let authority = rest.prefix(while: { $0 != "/" && $0 != "?" && $0 != "#" })
        guard !authority.contains("@") else { return nil }
        let path = rest.dropFirst(authority.count)
        guard !path.contains("?"), !path.contains("#"), scheme != .tcp || path.isEmpty || path == "/" else { return nil }
        if let address = ListenAddress(String(authority)) {
            self.init(scheme: scheme, host: address.host, port: address.port, basePath: Self.trimmed(path))
        } else if scheme != .tcp, !authority.isEmpty, !authority.contains(":"), !authority.contains("@") {
            self.init(scheme: scheme, host: String(authority), port: scheme == .https ? 443 : 80, basePath: Self.trimmed(path))
        } else {
            return nil
        }
        guard port > 0, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
    }

    private static func trimmed(_ path: Substring) -> String {
        path.hasSuffix("/") ? String(path.dropLast()) : String(path)
    }

    /// The upstream as a URL, e.g. `https://host:443/base`.
    public var description: String {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return "\(scheme.rawValue)://\(authority)\(basePath)"
    }
}
