/// The `gateway.limits:` section: what one client, one source address and all clients together may
/// hold of the listener, and how slowly they may send.
public struct GatewayLimits: Sendable, Equatable {
    /// Open client connections, all sources together; more are closed at accept.
    public var maxConnections: Int
    /// Open client connections from one source address (IPv6: one /64); more are closed at accept.
    public var maxConnectionsPerSource: Int
    /// The TLS handshake and the first request head must arrive within this time of the connection's
    /// start; each later head within this time of its first byte.
    public var headTimeout: Duration
    /// Least rate, in bytes per second, at which a request body must arrive once `bodyGrace` has
    /// passed (time while the gateway itself holds reads does not count).
    public var bodyMinRate: Int
    /// How long a body may arrive at any rate before `bodyMinRate` applies.
    public var bodyGrace: Duration
    /// A connection with nothing to do (no request under way) closes after this long.
    public var idleTimeout: Duration
    /// A tunnel (CONNECT or WebSocket) that carries no byte either way for this long is closed.
    public var tunnelIdleTimeout: Duration
    /// Refusals without valid credentials are recorded once per source per interval, with a count.
    public var denialInterval: Duration

    /// Limits with the given values; the defaults are the policy's.
    public init(
        maxConnections: Int = 2048,
        maxConnectionsPerSource: Int = 128,
        headTimeout: Duration = .seconds(10),
        bodyMinRate: Int = 1024,
        bodyGrace: Duration = .seconds(5),
        idleTimeout: Duration = .seconds(30),
        tunnelIdleTimeout: Duration = .seconds(1800),
        denialInterval: Duration = .seconds(10)
    ) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
        self.headTimeout = headTimeout
        self.bodyMinRate = bodyMinRate
        self.bodyGrace = bodyGrace
        self.idleTimeout = idleTimeout
        self.tunnelIdleTimeout = tunnelIdleTimeout
        self.denialInterval = denialInterval
    }
}
