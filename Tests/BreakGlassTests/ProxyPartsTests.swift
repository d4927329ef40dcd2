import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BreakGlassGateway
@testable import BreakGlassProxy

/// The pieces of the data path that need no network: the client's response head, the pool's
/// idle connections and the reading of a proxied path.
@Suite struct ProxyPartsTests {
    static func response(_ headers: [(String, String)], version: HTTPVersion = .http1_1) -> HTTPResponseHead {
        HTTPResponseHead(version: version, status: .ok, headers: HTTPHeaders(headers))
    }

    static func names(_ head: HTTPResponseHead) -> [String] {
        head.headers.map { "\($0.name): \($0.value)" }
    }

    @Test func anAnswerWithoutHopByHopHeadersPassesAsItIs() {
        let upstream = Self.response([("Server", "nginx"), ("Content-Length", "3"), ("Connection", "Keep-Alive")])
        let kept = ProxyHeaders.clientResponse(upstream, keepAlive: true)
        #expect(Self.names(kept) == ["Server: nginx", "Content-Length: 3", "Connection: Keep-Alive"])
        // Without a Connection header the client's is added.
        let bare = ProxyHeaders.clientResponse(Self.response([("Content-Length", "3")]), keepAlive: true)
        #expect(Self.names(bare) == ["Content-Length: 3", "Connection: keep-alive"])
    }

    @Test func hopByHopHeadersAreReplacedByTheClientsOwn() {
        // The client's connection closes after this answer: the upstream's keep-alive does not reach it.
        let closing = ProxyHeaders.clientResponse(Self.response([("Connection", "keep-alive"), ("Content-Length", "3")]), keepAlive: false)
        #expect(Self.names(closing) == ["Content-Length: 3", "Connection: close"])
        let other = ProxyHeaders.clientResponse(
            Self.response([("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "timeout=5"), ("Date", "d")]),
            keepAlive: true)
        #expect(Self.names(other) == ["Date: d", "Connection: keep-alive"])
        let twice = ProxyHeaders.clientResponse(
            Self.response([("Connection", "keep-alive"), ("connection", "keep-alive")]), keepAlive: true)
        #expect(Self.names(twice) == ["Connection: keep-alive"])
        let old = ProxyHeaders.clientResponse(Self.response([("Connection", "keep-alive")], version: .http1_0), keepAlive: true)
        #expect(old.version == .http1_1)
        #expect(Self.names(old) == ["Connection: keep-alive"])
    }

    @Test func idleConnectionsAreTakenAtOnceNewestFirstByPlaceAndStaleOnesClosed() throws {
        let loop = EmbeddedEventLoop()
        let pool = UpstreamPool()
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: loop) == nil)
        func connected() throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 80)).wait()
            return channel
        }
        let (first, second, closed) = (try connected(), try connected(), try connected())
        pool.checkin(first, pathway: "web", destination: "a", reusable: true)
        pool.checkin(closed, pathway: "web", destination: "a", reusable: true)
        pool.checkin(second, pathway: "web", destination: "a", reusable: true)
        _ = try closed.finish()
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: loop) === second)
        // The closed one is passed over on the way to the older one.
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: loop) === first)
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: loop) == nil)
        #expect(pool.takeIdle(pathway: "other", destination: "a", on: loop) == nil)
        // Another loop's connections are not handed out here.
        pool.checkin(first, pathway: "web", destination: "a", reusable: true)
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: EmbeddedEventLoop()) == nil)
        // Nor for another destination of the pathway (one a reload moved).
        #expect(pool.takeIdle(pathway: "web", destination: "b", on: loop) == nil)
        #expect(pool.takeIdle(pathway: "web", destination: "a", on: loop) === first)
    }

    @Test func aProxiedPathNamesItsPathwayAndKeepsTheRestAsSent() throws {
        func parsed(_ uri: String) -> ProxyTarget? { try? ProxyTarget.parse(uri).get() }
        #expect(parsed("/p/web") == ProxyTarget(pathway: "web", path: "/"))
        #expect(parsed("/p/web?x=1") == ProxyTarget(pathway: "web", path: "/?x=1"))
        #expect(parsed("/p/web/a/b?c=/d") == ProxyTarget(pathway: "web", path: "/a/b?c=/d"))
        #expect(parsed("/p/wéb/ä/ö?q=ü") == ProxyTarget(pathway: "wéb", path: "/ä/ö?q=ü"))
        for unnamed in ["/p/", "/p//x", "/p/?x=1"] {
            guard case .failure(let error) = ProxyTarget.parse(unnamed) else {
                Issue.record("\(unnamed) was accepted")
                continue
            }
            #expect(error.code == .notFound)
        }
    }
}
