import BreakGlassAPI
import BreakGlassCore
import BreakGlassProxy
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Opens CONNECT tunnels through a gateway: TLS to the gateway, `CONNECT PATHWAY:443` with the
/// grant token, and, once the gateway answers 200, a channel that carries raw bytes.
public struct TunnelConnector: Sendable {
    /// The pathway the tunnels lead to.
    public let pathway: String
    private let host: String
    private let port: Int
    private let context: NIOSSLContext
    private let token: String
    private let trust: GatewayTrust

    /// `gateway` is `https://HOST:PORT`; `caFile` is a PEM bundle to trust instead of the system roots.
    public init(gateway: String, caFile: String?, pathway: String, token: String) throws(ClientError) {
        guard let address = Self.address(gateway) else {
            throw ClientError(code: "invalid_gateway", message: "gateway \"\(gateway)\" must be https://HOST:PORT")
        }
        (host, port) = address
        context = try GatewayConnection.tlsContext(caFile: caFile)
        trust = GatewayTrust(caFile: caFile)
        self.pathway = pathway
        self.token = token
    }

    /// Opens one tunnel on `eventLoop`; join it to a local channel with `glue(_:to:)` at once (bytes
    /// that arrive meanwhile are held, not lost).
    public func open(on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let ready = eventLoop.makePromise(of: Void.self)
        let request =
            "CONNECT \(pathway):443 HTTP/1.1\r\nHost: \(pathway):443\r\nProxy-Authorization: Bearer \(token)\r\n"
            + "User-Agent: breakglass\r\n\r\n"
        let serverName = IPAddress(host) == nil ? host : nil
        let context = self.context
        let trust = self.trust
        let connected = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(ConnectHandshake(request: request, ready: ready))
                }
            }
            .connect(host: host, port: port)
        return connected.flatMap { channel in
            ready.futureResult.map { channel }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }.flatMapErrorThrowing { error in
            if error is ClientError { throw error }
            throw ClientError(
                code: "unreachable",
                message: "cannot open a tunnel through \(host):\(port): \(GatewayClient.describe(error, trust: trust))")
        }
    }

    /// Joins an open tunnel and a local channel (same event loop; call on it) byte for byte; held
    /// bytes go first, and the local channel starts reading.
    public static func glue(_ tunnel: any Channel, to local: any Channel) throws {
        let (tunnelSide, localSide) = GlueHandler.pair()
        try local.pipeline.syncOperations.addHandler(localSide)
        try tunnel.pipeline.syncOperations.addHandler(tunnelSide)
        let handshake = try tunnel.pipeline.syncOperations.handler(type: ConnectHandshake.self)
        _ = tunnel.pipeline.syncOperations.removeHandler(handshake)
        _ = local.setOption(.autoRead, value: true)
        tunnel.read()
    }

    static func address(_ gateway: String) -> (String, Int)? {
        guard gateway.lowercased().hasPrefix("https://") else { return nil }
        var authority = gateway.dropFirst("https://".count).prefix { $0 != "/" }
        var port = 443
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else { return nil }
            port = parsed
            authority = authority[..<colon]
        }
        let host = authority.hasPrefix("[") && authority.hasSuffix("]") ? authority.dropFirst().dropLast() : authority
        return host.isEmpty ? nil : (String(host), port)
    }
}

/// Sends the CONNECT request and reads the answer's head (at most 16 KiB). After a 200 it holds
/// what follows until it is removed, then passes it on; otherwise it fails with the gateway's error.
final class ConnectHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let request: String
    private let ready: EventLoopPromise<Void>
    private var received = ByteBuffer()
    private var failed = false
    private var established = false

    init(request: String, ready: EventLoopPromise<Void>) {
        self.request = request
        self.ready = ready
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(ByteBuffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Added to a connection that is already up (GatewayConnection): ask at once.
        if context.channel.isActive { context.writeAndFlush(NIOAny(ByteBuffer(string: request)), promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
        guard !failed, !established else { return }
        let view = received.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else {
            if received.readableBytes > 16 << 10 { fail(context, "the gateway's answer head is too large") }
            return
        }
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else {
            fail(context, "the gateway's answer is not HTTP: \(statusLine.prefix(80))")
            return
        }
        guard status == 200 else {
            // The JSON error body follows; wait briefly for it to name the problem.
            let body = String(decoding: view[end.upperBound...], as: UTF8.self)
            if let message = Self.errorMessage(body) {
                fail(context, message, status: status)
            } else if view[end.upperBound...].isEmpty {
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) {
                    self.fail(context, "the gateway refused the tunnel: \(statusLine)", status: status)
                }
            } else {
                fail(context, "the gateway refused the tunnel: \(statusLine)", status: status)
            }
            return
        }
        received.moveReaderIndex(to: received.readerIndex + view.distance(from: view.startIndex, to: end.upperBound))
        established = true
        ready.succeed()
    }

    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if established, received.readableBytes > 0 {
            context.fireChannelRead(NIOAny(received))
            context.fireChannelReadComplete()
        }
        received = ByteBuffer()
        context.leavePipeline(removalToken: removalToken)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !established { fail(context, "the gateway closed the connection before answering") }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Passed on as it is (a TLS failure, a reset): the opener puts it in words, naming its CA.
        fail(context, error)
    }

    private func fail(_ context: ChannelHandlerContext, _ message: String, status: Int? = nil) {
        fail(context, ClientError(code: status == nil ? "tunnel_failed" : "tunnel_refused", message: message, httpStatus: status))
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        guard !failed else { return }
        failed = true
        ready.fail(error)
        context.close(promise: nil)
    }

    static func errorMessage(_ body: String) -> String? {
        APIErrorAnswer.text(Array(body.utf8))
    }
}
