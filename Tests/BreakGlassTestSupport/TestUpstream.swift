import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// A real HTTP/1.1 upstream on 127.0.0.1 for proxy tests.
///
/// Routes: `/echo…` answers JSON with what it received (method, uri, headers, body size);
/// `/bytes/N` streams N bytes; `POST /count` reads the body and answers its size;
/// `/slow/MS` answers after MS milliseconds; `/drip` sends a chunk every 50 ms and never ends;
/// `/drop-next` answers, then closes its connection at the next request instead of answering;
/// `/ws` is a WebSocket echo.
public final class TestUpstream: Sendable {
    public let port: Int
    private let channel: any Channel
    /// Accepted connections, closed by `stop` as a stopped server's would be.
    private let accepted: AcceptedChannels

    /// With `tls`, the upstream speaks HTTPS; `port` 0 takes a free port (another: listen there again after a stop).
    public init(tls: NIOSSLContext? = nil, port: Int = 0) async throws {
        let accepted = AcceptedChannels()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    let upgrader = NIOWebSocketServerUpgrader(
                        shouldUpgrade: { channel, head in
                            channel.eventLoop.makeSucceededFuture(head.uri == "/ws" ? HTTPHeaders() : nil)
                        },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(WebSocketEcho())
                            }
                        }
                    )
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (
                            upgraders: [upgrader],
                            completionHandler: { context in
                                context.pipeline.removeHandler(name: "routes", promise: nil)
                            }
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(UpstreamRoutes(), name: "routes")
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
        guard let port = channel.localAddress?.port else { throw TestSupportError("the test upstream did not bind") }
        self.channel = channel
        self.port = port
        self.accepted = accepted
    }

    /// Stops listening and closes every connection.
    public func stop() async {
        try? await channel.close()
        for child in accepted.all { try? await child.close() }
    }
}

/// The connections a test server accepted.
final class AcceptedChannels: Sendable {
    private let channels = Mutex<[any Channel]>([])

    func add(_ channel: any Channel) {
        channels.withLock { $0 = $0.filter(\.isActive) + [channel] }
    }

    var all: [any Channel] { channels.withLock { $0 } }
}

/// Answers the test routes.
final class UpstreamRoutes: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var dripping: RepeatedTask?
    /// Set by `/drop-next`: the next request on this connection gets no answer, only a close (as
    /// when a keep-alive connection times out just as a request is sent on it).
    private var dropNext = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
        case .end:
            guard let head else { return }
            answer(context: context, head: head)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        dripping?.cancel()
        context.fireChannelInactive()
    }

    private func answer(context: ChannelHandlerContext, head: HTTPRequestHead) {
        if dropNext {
            context.close(promise: nil)
            return
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if path == "/drop-next" { dropNext = true }
        if path.hasPrefix("/bytes/"), let count = Int(path.dropFirst("/bytes/".count)) {
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: String(count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            stream(context: context, remaining: count)
        } else if path.hasPrefix("/slow/"), let milliseconds = Int64(path.dropFirst("/slow/".count)) {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
                let (handler, context) = bound.value
                handler.json(context: context, ["slept_ms": milliseconds])
            }
        } else if path == "/drip" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            dripping = context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(50)) { _ in
                let (handler, context) = bound.value
                context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "drip\n")))), promise: nil)
            }
        } else if path == "/count" {
            json(context: context, ["bytes": bodyBytes])
        } else {
            let headers = head.headers.map { [$0.name, $0.value] }
            json(
                context: context,
                [
                    "method": head.method.rawValue, "uri": head.uri, "headers": headers, "body_bytes": bodyBytes,
                    "server_port": context.channel.localAddress?.port ?? 0,
                ] as [String: Any])
        }
    }

    /// Streams bytes in 64 KiB chunks while the connection can take them; resumes when it can again.
    private func stream(context: ChannelHandlerContext, remaining: Int) {
        streaming = remaining
        pump(context: context)
    }

    private var streaming = 0
    private let chunk = ByteBuffer(repeating: 0x61, count: 64 << 10)

    private func pump(context: ChannelHandlerContext) {
        guard streaming > 0 else { return }
        while streaming > 0 && context.channel.isWritable {
            let size = min(streaming, chunk.readableBytes)
            streaming -= size
            context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: 0, length: size) ?? chunk))), promise: nil)
        }
        if streaming == 0 {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func json(context: ChannelHandlerContext, _ object: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(data.count))
        headers.add(name: "Keep-Alive", value: "timeout=30")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Sends every WebSocket data frame back; answers pings and closes.
final class WebSocketEcho: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            let echo = WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(echo), promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer())))
                .whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }
}

/// A TCP server that sends back what it receives; a half close from the client is answered by a
/// half close once everything is echoed.
public final class TestTCPEchoServer: Sendable {
    public let port: Int
    private let channel: any Channel

    /// With a `banner`, each connection is greeted with it first.
    public init(banner: String? = nil) async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TCPEcho(banner: banner))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else { throw TestSupportError("the TCP echo server did not bind") }
        self.channel = channel
        self.port = port
    }

    public func stop() async {
        try? await channel.close()
    }
}

final class TCPEcho: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let banner: String?

    init(banner: String?) {
        self.banner = banner
    }

    func channelActive(context: ChannelHandlerContext) {
        if let banner { context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: banner)), promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            context.close(mode: .output, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Ports for tests.
public enum TestPorts {
    /// A port on 127.0.0.1 that nothing listens on (bound, read, released).
    public static func unused() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestSupportError("bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
