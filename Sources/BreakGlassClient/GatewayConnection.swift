import BreakGlassAPI
import BreakGlassCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// One TLS connection to a gateway, for callers that time each step (self-tests, drills): open
/// (TCP and TLS handshake), then HTTP requests one at a time, or a CONNECT tunnel whose first bytes
/// can be read.
public final class GatewayConnection: Sendable {
    /// An answer; the body is kept up to `GatewayConnection.bodyLimit` bytes, the rest only counted.
    public struct Response: Sendable {
        /// The HTTP status code.
        public var status: Int
        /// The header fields, in order.
        public var headers: [(String, String)]
        /// The body, up to `GatewayConnection.bodyLimit` bytes.
        public var body: [UInt8]
        /// The body's full length in bytes, including what was not kept.
        public var bodyBytes: Int

        /// The kept body as UTF-8 text.
        public var text: String { String(decoding: body, as: UTF8.self) }

        /// `MESSAGE [CODE]` when the body is the gateway's JSON error.
        public var gatewayError: String? { APIErrorAnswer.text(body) }
    }

    /// Most body bytes kept per response.
    public static let bodyLimit = 64 << 10

    private let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    /// The TLS context for a gateway: TLS 1.2 or later, trusting `caFile` (nil: the system roots).
    public static func tlsContext(caFile: String?) throws(ClientError) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: try GatewayClient.tlsConfiguration(caFile: caFile))
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: "invalid_ca", message: "cannot set up TLS: \(error)")
        }
    }

    /// Connects and completes the TLS handshake, checking the certificate for `serverName`;
    /// `trust` (the CA `context` trusts) is named if the gateway's certificate does not verify.
    public static func open(
        host: String, port: Int, context: NIOSSLContext, serverName: String?, timeout: Duration,
        trust: GatewayTrust? = nil,
        on eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    ) async throws(ClientError) -> GatewayConnection {
        let handshake = eventLoop.makePromise(of: Void.self)
        let name = serverName ?? (IPAddress(host) == nil ? host : nil)
        let connecting = ClientBootstrap(group: eventLoop)
            .connectTimeout(.milliseconds(Int64(timeout.totalMilliseconds)))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: name))
                    try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(promise: handshake))
                }
            }
            .connect(host: host, port: port)
        connecting.whenFailure { handshake.fail($0) }
        let timer = eventLoop.scheduleTask(in: .milliseconds(Int64(timeout.totalMilliseconds))) {
            handshake.fail(ClientError(code: "timeout", message: "no TLS connection to \(host):\(port) within \(timeout.policyText)"))
        }
        do {
            let channel = try await connecting.get()
            do {
                try await handshake.futureResult.get()
            } catch {
                channel.close(promise: nil)
                throw error
            }
            timer.cancel()
            return GatewayConnection(channel: channel)
        } catch let error as ClientError {
            timer.cancel()
            throw error
        } catch {
            timer.cancel()
            throw ClientError(
                code: "unreachable", message: "cannot connect to \(host):\(port): \(GatewayClient.describe(error, trust: trust))")
        }
    }

    /// Sends one request and waits at most `timeout` for the whole answer.
    public func request(
        _ method: HTTPMethod, _ uri: String, headers: [(String, String)] = [], body: [UInt8]? = nil, timeout: Duration
    ) async throws(ClientError) -> Response {
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let channel = self.channel
        channel.eventLoop.execute {
            do {
                let sync = channel.pipeline.syncOperations
                let collector: ResponseCollector
                if let existing = try? sync.handler(type: ResponseCollector.self) {
                    collector = existing
                } else {
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
                    collector = ResponseCollector()
                    try sync.addHandler(collector)
                }
                guard channel.isActive else {
                    promise.fail(ClientError(code: "closed", message: "the gateway closed the connection"))
                    return
                }
                collector.expect(promise)
                var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
                head.headers.add(name: "Host", value: "gateway")
                head.headers.add(name: "User-Agent", value: "breakglass")
                for (name, value) in headers { head.headers.add(name: name, value: value) }
                if let body { head.headers.add(name: "Content-Length", value: String(body.count)) }
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            } catch {
                promise.fail(error)
            }
        }
        return try await Self.wait(promise.futureResult, timeout: timeout, what: "\(method) \(uri.prefix(80))", channel: channel)
    }

    /// Asks for a CONNECT tunnel to `pathway` with the grant token; returns once the gateway said 200.
    public func openTunnel(pathway: String, token: String, timeout: Duration) async throws(ClientError) {
        let ready = channel.eventLoop.makePromise(of: Void.self)
        let request =
            "CONNECT \(pathway):443 HTTP/1.1\r\nHost: \(pathway):443\r\nProxy-Authorization: Bearer \(token)\r\nUser-Agent: breakglass\r\n\r\n"
        let channel = self.channel
        channel.eventLoop.execute {
            guard channel.isActive else {
                ready.fail(ClientError(code: "closed", message: "the gateway closed the connection"))
                return
            }
            do {
                try channel.pipeline.syncOperations.addHandler(ConnectHandshake(request: request, ready: ready))
            } catch {
                ready.fail(error)
            }
        }
        try await Self.wait(ready.futureResult, timeout: timeout, what: "CONNECT \(pathway)", channel: channel)
    }

    /// After `openTunnel`: the first bytes the upstream sends, up to `limit`, waiting at most
    /// `timeout` (or until the upstream closes).
    public func readTunnel(limit: Int, timeout: Duration) async throws(ClientError) -> [UInt8] {
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        let channel = self.channel
        channel.eventLoop.execute {
            do {
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(BytesCollector(limit: limit, promise: promise))
                let handshake = try sync.handler(type: ConnectHandshake.self)
                _ = sync.removeHandler(handshake)
            } catch {
                promise.fail(error)
            }
        }
        return try await Self.wait(promise.futureResult, timeout: timeout, what: "the upstream's first bytes", channel: channel)
    }

    /// Closes the connection.
    public func close() async {
        try? await channel.close()
    }

    /// The future's value, or a timeout error once `timeout` has passed (the connection is then
    /// closed; a TLS close may take a while, so the answer does not wait for it).
    private static func wait<Value: Sendable>(
        _ future: EventLoopFuture<Value>, timeout: Duration, what: String, channel: any Channel
    ) async throws(ClientError) -> Value {
        let outcome = channel.eventLoop.makePromise(of: Value.self)
        future.cascade(to: outcome)
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout.totalMilliseconds))) {
            outcome.fail(ClientError(code: "timeout", message: "\(what): no answer within \(timeout.policyText)"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await outcome.futureResult.get()
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: "failed", message: "\(what): \(GatewayClient.describe(error, trust: nil))")
        }
    }
}

/// Completes its promise when the TLS handshake is done, fails it on an error or close.
private final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ClientError(code: "unreachable", message: "the gateway closed the connection during the TLS handshake"))
        context.fireChannelInactive()
    }
}

/// Gathers one HTTP response at a time.
private final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var promise: EventLoopPromise<GatewayConnection.Response>?
    private var response: GatewayConnection.Response?

    func expect(_ promise: EventLoopPromise<GatewayConnection.Response>) {
        self.promise = promise
        self.response = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response = GatewayConnection.Response(
                status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }, body: [], bodyBytes: 0)
        case .body(let buffer):
            response?.bodyBytes += buffer.readableBytes
            if let kept = response?.body.count, kept < GatewayConnection.bodyLimit {
                response?.body += buffer.readableBytesView.prefix(GatewayConnection.bodyLimit - kept)
            }
        case .end:
            if let response { promise?.succeed(response) }
            promise = nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ClientError(code: "closed", message: "the gateway closed the connection before answering"))
        promise = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise?.fail(ClientError(code: "closed", message: "the connection was closed"))
        promise = nil
    }
}

/// Gathers a tunnel's first bytes.
private final class BytesCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let limit: Int
    private let promise: EventLoopPromise<[UInt8]>
    private var bytes: [UInt8] = []
    private var done = false

    init(limit: Int, promise: EventLoopPromise<[UInt8]>) {
        self.limit = limit
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !context.channel.isActive { finish() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytes += buffer.readableBytesView.prefix(max(0, limit - bytes.count))
        if bytes.count >= limit { finish() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !bytes.isEmpty { finish() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if bytes.isEmpty { promise.fail(error) } else { finish() }
        done = true
    }

    private func finish() {
        guard !done else { return }
        done = true
        promise.succeed(bytes)
    }
}
