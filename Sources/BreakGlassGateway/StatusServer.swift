import BreakGlassCore
import BreakGlassProxy
import Logging
import NIOCore
import NIOPosix

/// The plain HTTP listener of `gateway.status: HOST:PORT`: `/v1/health` and `/metrics` only,
/// without details (`StatusRouter`), with the same head and idle deadlines as the TLS listener.
final class StatusServer: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The bound address (port 0 in the policy asks for a free one).
    var localAddress: SocketAddress? { channel.localAddress }

    static func start(
        address: ListenAddress, router: StatusRouter, limits: GatewayLimits, group: any EventLoopGroup, logger: Logger
    ) async throws -> StatusServer {
        let httpLimits = HTTPLimits()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let http = HTTPServerHandlers(limits: limits)
                    try sync.addHandlers([http.deadlines, http.encoder, http.decoder])
                    try sync.addHandler(
                        GatewayChannelHandler(route: { router.routeOnly($0) }, proxy: nil, limits: httpLimits, handlers: http))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
        logger.notice("status listening", metadata: ["address": "\(channel.localAddress?.hostAndPort ?? "?")"])
        return StatusServer(channel: channel)
    }

    func shutdown() async {
        try? await channel.close()
    }
}
