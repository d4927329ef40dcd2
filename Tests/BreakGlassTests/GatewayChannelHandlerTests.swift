import BreakGlassCore
import BreakGlassProxy
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing

@testable import BreakGlassGateway

/// `GatewayChannelHandler` in an `EmbeddedChannel` with the real HTTP/1.1 handlers and a router
/// that echoes the path: the connection state machine's actions as bytes on the wire.
@Suite struct GatewayChannelHandlerTests {
    /// The paths the router saw, in order.
    final class Routed: Sendable {
        let paths = Mutex<[String]>([])
        var all: [String] { paths.withLock { $0 } }
    }

    /// A connection to a listener that serves only an API; `routed` keeps the paths in the order
    /// the router saw them.
    static func connection(limits: HTTPLimits = HTTPLimits(maximumBodyBytes: 64)) throws -> (EmbeddedChannel, Routed) {
        let channel = EmbeddedChannel()
        let routed = Routed()
        let http = HTTPServerHandlers(limits: GatewayLimits())
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(http.deadlines)
        try sync.addHandlers([http.coalescer, http.encoder, http.decoder])
        let handler = GatewayChannelHandler(
            route: { [routed] request in
                routed.paths.withLock { $0.append(request.uri) }
                return APIResponse(status: .ok, body: ByteBuffer(string: "answer to \(request.uri)"))
            }, proxy: nil, limits: limits, handlers: http)
        try sync.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8443)).wait()
        return (channel, routed)
    }

    /// What the connection wrote, once `answers` answers are out (the router runs in a task; its
    /// answer comes back through the event loop).
    static func written(_ channel: EmbeddedChannel, answers: Int) async throws -> String {
        var text = ""
        for _ in 0..<2000 {
            channel.embeddedEventLoop.run()
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            if text.components(separatedBy: "HTTP/1.1 ").count - 1 >= answers { return text }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("\(answers) answers did not come; written: \(text)")
        return text
    }

    static func request(_ path: String, _ extra: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: gateway\r\n\(extra)\r\n"
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOneAtATime() async throws {
        let (channel, routed) = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: Self.request("/v1/a") + Self.request("/v1/b") + Self.request("/v1/c")))
        // The second request reaches the router only once the first is answered.
        #expect(routed.all.count <= 1)
        let text = try await Self.written(channel, answers: 3)
        let order = ["answer to /v1/a", "answer to /v1/b", "answer to /v1/c"].compactMap { text.range(of: $0)?.lowerBound }
        #expect(order.count == 3)
        #expect(order == order.sorted())
        #expect(routed.all == ["/v1/a", "/v1/b", "/v1/c"])
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test func bytesThatAreNotHTTPGetA400WithItsCodeAndTheConnectionCloses() async throws {
        let (channel, routed) = try Self.connection()
        _ = try? channel.writeInbound(ByteBuffer(string: "NOT HTTP AT ALL\r\n\r\n"))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(text.contains("\"code\":\"invalid_request\""))
        #expect(text.contains("Connection: close"))
        #expect(routed.all.isEmpty)
        #expect(!channel.isActive)
    }

    @Test func whatFollowsAMalformedRequestIsNotServed() async throws {
        let (channel, routed) = try Self.connection()
        _ = try? channel.writeInbound(ByteBuffer(string: Self.request("/v1/a") + "GARBAGE\u{1}\r\n\r\n" + Self.request("/v1/b")))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.contains("answer to /v1/a"))
        #expect(text.contains("Connection: close"))
        #expect(!text.contains("/v1/b"))
        #expect(routed.all == ["/v1/a"])
        #expect(!channel.isActive)
    }

    @Test func anAPIBodyOverTheLimitGets413AndTheConnectionCloses() async throws {
        let (channel, routed) = try Self.connection()
        // Announced too large: refused at the head.
        try channel.writeInbound(ByteBuffer(string: "POST /v1/grants HTTP/1.1\r\nHost: g\r\nContent-Length: 65\r\n\r\n"))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(text.contains("\"code\":\"payload_too_large\""))
        #expect(routed.all.isEmpty)
        #expect(!channel.isActive)

        // Chunked: refused when the chunks pass the limit.
        let (chunked, _) = try Self.connection()
        let chunk = String(repeating: "x", count: 40)
        try chunked.writeInbound(
            ByteBuffer(
                string: "POST /v1/grants HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n\(chunk)\r\n28\r\n\(chunk)\r\n"))
        let refused = try await Self.written(chunked, answers: 1)
        #expect(refused.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(!chunked.isActive)
    }

    @Test func tooManyHeaderFieldsGet431() async throws {
        let (channel, _) = try Self.connection(limits: HTTPLimits(maximumHeaderCount: 3))
        try channel.writeInbound(ByteBuffer(string: Self.request("/v1/a", "A: 1\r\nB: 2\r\nC: 3\r\n")))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 431"))
        #expect(text.contains("\"code\":\"headers_too_large\""))
        #expect(!channel.isActive)
    }

    @Test func shutdownLetsTheRequestInProgressFinishThenCloses() async throws {
        let (channel, routed) = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: Self.request("/v1/a") + Self.request("/v1/b")))
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let text = try await Self.written(channel, answers: 1)
        #expect(text.contains("answer to /v1/a"))
        #expect(text.contains("Connection: close"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
        // The request that waited is not served.
        #expect(routed.all == ["/v1/a"])

        // An idle connection closes at once.
        let (idle, _) = try Self.connection()
        idle.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(!idle.isActive)
    }

    @Test func proxiedPathsAreAPIRequestsOnAListenerWithoutAProxy() async throws {
        let (channel, routed) = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: Self.request("/p/web/x")))
        _ = try await Self.written(channel, answers: 1)
        #expect(routed.all == ["/p/web/x"])
        _ = try? channel.finish()
    }
}
