import BreakGlassCore
import BreakGlassProxy
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing

@testable import BreakGlassGateway

/// `GatewayChannelHandler` in a `NIOAsyncTestingChannel` with the real HTTP/1.1 handlers and a router
/// that echoes the path: the connection state machine's actions as bytes on the wire.
@Suite struct GatewayChannelHandlerTests {
    /// The paths the router saw, in order.
    final class Routed: Sendable {
        let paths = Mutex<[String]>([])
        var all: [String] { paths.withLock { $0 } }
    }

    /// A connection to a listener that serves only an API; `routed` keeps the paths in the order
    /// the router saw them. The testing channel's loop takes the router's answers from its task.
    /// `answerDelay`: how long the router takes (so that something can happen while it works).
    static func connection(
        limits: HTTPLimits = HTTPLimits(maximumBodyBytes: 64), answerDelay: Duration = .zero
    ) async throws -> (NIOAsyncTestingChannel, Routed) {
        let channel = NIOAsyncTestingChannel()
        let routed = Routed()
        try await channel.testingEventLoop.executeInContext {
            let http = HTTPServerHandlers(limits: GatewayLimits())
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(http.deadlines)
            try sync.addHandlers([http.coalescer, http.encoder, http.decoder])
            let handler = GatewayChannelHandler(
                route: { [routed] request in
                    routed.paths.withLock { $0.append(request.uri) }
                    if answerDelay > .zero { try? await Task.sleep(for: answerDelay) }
                    return APIResponse(status: .ok, body: ByteBuffer(string: "answer to \(request.uri)"))
                }, proxy: nil, limits: limits, handlers: http)
            try sync.addHandler(handler)
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8443))
        return (channel, routed)
    }

    /// What the connection wrote, once `answers` answers are out (the router runs in a task; its
    /// answer comes back through the event loop).
    static func written(_ channel: NIOAsyncTestingChannel, answers: Int) async throws -> String {
        var text = ""
        for _ in 0..<2000 {
            await channel.testingEventLoop.run()
            while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            if text.components(separatedBy: "HTTP/1.1 ").count - 1 >= answers { return text }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("\(answers) answers did not come; written: \(text)")
        return text
    }

    /// Sends `text` as the client; a refusal the pipeline raises is the tests' to check.
    static func send(_ channel: NIOAsyncTestingChannel, _ text: String) async {
        _ = try? await channel.writeInbound(ByteBuffer(string: text))
    }

    /// Shutdown reaches the connection (`ChannelShouldQuiesceEvent`), then the loop runs.
    static func quiesce(_ channel: NIOAsyncTestingChannel) async throws {
        try await channel.testingEventLoop.executeInContext {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        await channel.testingEventLoop.run()
    }

    static func request(_ path: String, _ extra: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: gateway\r\n\(extra)\r\n"
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOneAtATime() async throws {
        let (channel, routed) = try await Self.connection()
        await Self.send(channel, Self.request("/v1/a") + Self.request("/v1/b") + Self.request("/v1/c"))
        // The second request reaches the router only once the first is answered.
        #expect(routed.all.count <= 1)
        let text = try await Self.written(channel, answers: 3)
        let order = ["answer to /v1/a", "answer to /v1/b", "answer to /v1/c"].compactMap { text.range(of: $0)?.lowerBound }
        #expect(order.count == 3)
        #expect(order == order.sorted())
        #expect(routed.all == ["/v1/a", "/v1/b", "/v1/c"])
        #expect(channel.isActive)
        _ = try? await channel.finish()
    }

    @Test func bytesThatAreNotHTTPGetA400WithItsCodeAndTheConnectionCloses() async throws {
        let (channel, routed) = try await Self.connection()
        await Self.send(channel, "NOT HTTP AT ALL\r\n\r\n")
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(text.contains("\"code\":\"invalid_request\""))
        #expect(text.contains("Connection: close"))
        #expect(routed.all.isEmpty)
        #expect(!channel.isActive)
    }

    @Test func whatFollowsAMalformedRequestIsNotServed() async throws {
        let (channel, routed) = try await Self.connection()
        await Self.send(channel, Self.request("/v1/a") + "GARBAGE\u{1}\r\n\r\n" + Self.request("/v1/b"))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.contains("answer to /v1/a"))
        #expect(text.contains("Connection: close"))
        #expect(!text.contains("/v1/b"))
        #expect(routed.all == ["/v1/a"])
        #expect(!channel.isActive)
    }

    @Test func anAPIBodyOverTheLimitGets413AndTheConnectionCloses() async throws {
        let (channel, routed) = try await Self.connection()
        // Announced too large: refused at the head.
        await Self.send(channel, "POST /v1/grants HTTP/1.1\r\nHost: g\r\nContent-Length: 65\r\n\r\n")
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(text.contains("\"code\":\"payload_too_large\""))
        #expect(routed.all.isEmpty)
        #expect(!channel.isActive)

        // Chunked: refused when the chunks pass the limit.
        let (chunked, _) = try await Self.connection()
        let chunk = String(repeating: "x", count: 40)
        await Self.send(
            chunked, "POST /v1/grants HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n\(chunk)\r\n28\r\n\(chunk)\r\n")
        let refused = try await Self.written(chunked, answers: 1)
        #expect(refused.hasPrefix("HTTP/1.1 413 Payload Too Large"))
        #expect(!chunked.isActive)
    }

    @Test func tooManyHeaderFieldsGet431() async throws {
        let (channel, _) = try await Self.connection(limits: HTTPLimits(maximumHeaderCount: 3))
        await Self.send(channel, Self.request("/v1/a", "A: 1\r\nB: 2\r\nC: 3\r\n"))
        let text = try await Self.written(channel, answers: 1)
        #expect(text.hasPrefix("HTTP/1.1 431"))
        #expect(text.contains("\"code\":\"headers_too_large\""))
        #expect(!channel.isActive)
    }

    @Test func shutdownLetsTheRequestInProgressFinishThenCloses() async throws {
        let (channel, routed) = try await Self.connection(answerDelay: .milliseconds(200))
        await Self.send(channel, Self.request("/v1/a") + Self.request("/v1/b"))
        try await Self.quiesce(channel)
        let text = try await Self.written(channel, answers: 1)
        #expect(text.contains("answer to /v1/a"))
        #expect(text.contains("Connection: close"))
        await channel.testingEventLoop.run()
        #expect(!channel.isActive)
        // The request that waited is not served.
        #expect(routed.all == ["/v1/a"])

        // An idle connection closes at once.
        let (idle, _) = try await Self.connection()
        try await Self.quiesce(idle)
        #expect(!idle.isActive)
    }

    @Test func proxiedPathsAreAPIRequestsOnAListenerWithoutAProxy() async throws {
        let (channel, routed) = try await Self.connection()
        await Self.send(channel, Self.request("/p/web/x"))
        _ = try await Self.written(channel, answers: 1)
        #expect(routed.all == ["/p/web/x"])
        _ = try? await channel.finish()
    }
}
