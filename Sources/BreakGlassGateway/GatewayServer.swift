import BreakGlassConfig
import BreakGlassCore
import BreakGlassProxy
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The TLS listener: accepts connections, terminates TLS 1.2+/HTTP/1.1, serves the API and carries
/// pathway traffic (HTTP proxy and CONNECT tunnels).
public final class GatewayServer: Sendable {
    private let channel: any Channel
    private let quiesce: ServerQuiescingHelper
    private let logger: Logger

    /// The address the listener is bound to (useful with port 0).
    public var localAddress: SocketAddress? { channel.localAddress }

    private init(channel: any Channel, quiesce: ServerQuiescingHelper, logger: Logger) {
        self.channel = channel
        self.quiesce = quiesce
        self.logger = logger
    }

    /// Binds the listener on `address`; each new connection uses the TLS context in force.
    public static func start(
        host: String,
        port: Int,
        runtime: GatewayRuntime,
        proxy: PathwayProxy,
        router: APIRouter,
        limits: HTTPLimits = HTTPLimits(),
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> GatewayServer {
        let quiesce = ServerQuiescingHelper(group: group)
        let limiter = ConnectionLimiter()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                // The caps of the policy in force (a reload applies to the next connection).
                let settings = runtime.store.current.policy.gateway.limits
                let source = channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)?.lockoutKey
                if let refusal = limiter.admit(
                    source: source, total: settings.maxConnections, perSource: settings.maxConnectionsPerSource)
                {
                    logger.debug("connection refused at accept", metadata: ["source": "\(source ?? "?")", "cap": "\(refusal)"])
                    return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
                }
                channel.closeFuture.whenComplete { _ in limiter.release(source: source) }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let http = HTTPServerHandlers(limits: settings)
                    try sync.addHandler(NIOSSLServerHandler(context: runtime.tlsContext))
                    try sync.addHandler(http.deadlines)
                    try sync.addHandlers([http.coalescer, http.encoder, http.decoder])
                    try sync.addHandler(
                        GatewayChannelHandler(route: { await router.route($0) }, proxy: proxy, limits: limits, handlers: http))
                }
            }
            .bind(host: host, port: port)
            .get()
        logger.notice("gateway listening", metadata: ["address": "\(channel.localAddress?.hostAndPort ?? "?")"])
        return GatewayServer(channel: channel, quiesce: quiesce, logger: logger)
    }

    /// Stops accepting, lets requests in progress finish, then closes every connection.
    public func shutdown() async {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: promise)
        try? await promise.futureResult.get()
        logger.notice("gateway stopped listening")
    }
}
