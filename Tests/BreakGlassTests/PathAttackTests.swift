import BreakGlassCore
import BreakGlassProxy
import BreakGlassTestSupport
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import BreakGlassGateway

/// Paths that try to leave the upstream's base path (issue #16, item 6): dot segments in every
/// encoding, path parameters, escaped separators, double and overlong encodings, NUL, double
/// slashes, an escaped or differently cased pathway name. Each is refused before it reaches the
/// upstream, which an upstream recording the exact bytes it receives shows.
@Suite struct PathAttackTests {
    /// Paths under `/p/web` that some upstream would read as another place than the one they name.
    static let escapes: [String] = [
        // `;` path parameters: Tomcat and Jetty drop them, then resolve the dot segment.
        "/..;/manager", "/a/..;x=1/b", "/.;/x", "/..;", "/a/..;/..;/b",
        // Dots followed by a space encoded twice (found by review: `%25` hid the dots from the count).
        "/..%2520", "/.%2520/x", "/a/..%2520", "/..%20%2520", "/..%25%32%30/x",
        // Backslash, raw or escaped.
        "/..%5c..%5cetc", "/..%5C", "/a%5cb", "/a\\..\\b",
        // Escaped dots, slashes and `;`.
        "/%2e%2e/admin", "/.%2E/x", "/%2e/", "/a%2Fb", "/..%3b/manager", "/%3B/x", "/a%2e%2e%2e",
        // Double encoding: dots, slashes, backslashes, `;`, NUL, a third level.
        "/%252e%252e/admin", "/%252E%252e/", "/a%252fb", "/a%255c..%255cb", "/..%253b/x", "/..%2500/x", "/a%25252e",
        // Overlong and otherwise invalid UTF-8, once or twice encoded.
        "/%c0%ae%c0%ae/admin", "/%c0%af", "/%e0%80%ae/x", "/%25c0%25ae%25c0%25ae/", "/%ff", "/%ed%a0%80", "/%c3", "/%c3%25a9",
        // NUL and other control bytes.
        "/..%00/admin", "/a%00", "/a%0d%0aX-Injected:%20yes", "/a%7f", "/a%09",
        // IIS's %u escapes, once or twice encoded.
        "/%u002e%u002e/admin", "/%25u002e/x",
        // Dot segments with trailing (escaped) spaces, as trimmed by some servers.
        "/..%20/admin", "/.%20%20/x",
        // Empty segments.
        "//admin", "/a//b", "/a/;/b", "/a/;x=1/b",
        // A fragment has no place in a request target.
        "/a#/../admin", "/a?q=1#/../admin",
    ]

    /// Paths that look odd but stay inside, forwarded as sent.
    static let inside: [String] = [
        "", "/", "/a/b", "/a.b/c..d/.x/..y", "/.../x", "/a..", "/..a", "/file;jsessionid=1", "/a/;jsessionid=1", "/a/",
        "/%41%c3%a9", "/100%25", "/50%25off", "/a%20b", "/%20.", "/a+b", "/a:b@c", "/%2", "/a%2", "/a%zz",
        "/x?path=../..;%2e%2e//%00", "?q=%2f", "/a;b=c/d",
    ]

    @Test(arguments: escapes) func anEscapeIsRefusedByTheParser(_ path: String) {
        guard case .failure(let error) = ProxyTarget.parse("/p/web" + path) else {
            Issue.record("\(path) was accepted")
            return
        }
        #expect(error.code == .invalidRequest, "\(path): \(error)")
    }

    @Test(arguments: inside) func aPathThatStaysInsideIsKept(_ path: String) throws {
        let target = try ProxyTarget.parse("/p/web" + path).get()
        #expect(target.pathway == "web")
        #expect(target.path == (path.hasPrefix("/") ? path : "/" + path))
    }

    @Test func anEscapedPathwayNameIsRefusedAndAnotherCaseIsAnotherName() throws {
        for name in ["%77eb", "w%65b", "%57EB", "web%2f..", "web%00"] {
            guard case .failure(let error) = ProxyTarget.parse("/p/\(name)/x") else {
                Issue.record("\(name) was accepted")
                continue
            }
            #expect(error.code == .invalidRequest, "\(name): \(error)")
        }
        #expect(try ProxyTarget.parse("/p/WEB/x").get().pathway == "WEB")
        #expect(try ProxyTarget.parse("/p/Web/x").get().pathway == "Web")
        guard case .failure = ProxyTarget.parse("/q/web/x") else {
            Issue.record("a target outside /p/ was read as a pathway's")
            return
        }
    }

    /// A CONNECT authority is read as bytes: the last `:` before a port from 1 to 65535, a name of at
    /// most 64 bytes. Before, the name was counted in Characters, so 64 accented letters were 128 bytes.
    @Test func aConnectAuthorityIsReadAsBytes() {
        #expect(ProxyTarget.connectPathway("db-primary:5432") == "db-primary")
        #expect(ProxyTarget.connectPathway("a:b:443") == "a:b")
        for target in ["db", "db:", ":443", "db:0", "db:65536", "db:\u{0318}443", String(repeating: "\u{E9}", count: 64) + ":443"] {
            #expect(ProxyTarget.connectPathway(target) == nil, "\(target.debugDescription)")
        }
        #expect(ProxyTarget.connectPathway(String(repeating: "a", count: 64) + ":443") != nil)
    }

    /// The path an audit record keeps is at most 2048 bytes and stays valid UTF-8. Before, it was cut
    /// at 2048 Characters, and one Character can be any number of bytes (a letter with combining marks).
    @Test func anAuditedPathIsBoundedInBytes() throws {
        let marks = String(repeating: "\u{0301}", count: 3000)
        for uri in ["/p/web/a" + marks, "/p/web/a" + marks + "?k=v", "/p/web/" + String(repeating: "\u{E9}", count: 1500) + "?k=v"] {
            guard case .success(let target) = ProxyTarget.parse(uri) else {
                Issue.record("\(uri.prefix(12)) was refused")
                continue
            }
            for keep in [false, true] {
                let audited = target.auditPath(keepingQueryValues: keep)
                #expect(audited.utf8.count <= 2048, "\(audited.utf8.count) bytes")
                #expect(audited.utf8.starts(with: "/".utf8))
            }
        }
    }

    /// A token of an ended session replayed where the policy refuses it anyway (here as an HTTP
    /// request to a tcp pathway) is summarized per source like any dead token, not recorded once per
    /// request. Before, the policy's refusal came first and each replay was a record of its own.
    @Test func aDeadTokenReplayedAgainstThePolicyIsSummarized() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let bob = try await fixture.login("bob", pathway: "echo")
        await fixture.gateway.service.proxy.registry.end([bob.session], as: .released, by: "test")
        for _ in 0..<20 {
            let refused = try await fixture.get("/p/echo/x", token: bob.token)
            #expect(refused.status == 400)
        }
        // However long the replays took (a busy machine may cross the summary interval), the
        // session's refusals are summaries only: none is recorded alone, and together they count 20.
        await fixture.gateway.service.denials.flush()
        let ownRecords = fixture.events(.requestDenied).filter { $0.fields["session"] == .string(bob.session) }
        let alone = ownRecords.filter { $0.fields["count"] == nil }
        #expect(alone.isEmpty, "\(alone.count) records of their own for 20 replays")
        let counted = ownRecords.reduce(Int64(0)) { total, record in
            guard case .integer(let count) = record.fields["count"] else { return total }
            return total + count
        }
        #expect(counted == 20, "summaries count \(counted) replays of 20")
    }

    /// A CONNECT port is decimal digits only. Before, `Int(_:)` also took a sign, so `db:+443` and
    /// `db:-0` were read the same as `db:443` (found by reading the FuzzProxyTarget invariant).
    @Test func aConnectPortIsDigitsOnly() {
        for target in ["db:+443", "db:-443", "db:+0443", "db: 443", "db:443 ", "db:0x1bb", "db:000000443"] {
            #expect(ProxyTarget.connectPathway(target) == nil, "\(target.debugDescription)")
        }
        #expect(ProxyTarget.connectPathway("db:0443") == "db")
    }

    /// Every escape through a real gateway with a valid token: 400, and the upstream sees nothing;
    /// then a plain request still goes through.
    @Test func escapesNeverReachTheUpstream() async throws {
        let upstream = try await RecordingUpstream()
        let gateway = try await TestGateway(
            policyBody: """
                pathways:
                  web:
                    kind: http
                    upstream: http://127.0.0.1:\(upstream.port)/base
                    allow: { users: [alice] }

                """)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        defer {
            Task {
                await client.shutdown()
                await gateway.stop()
                await upstream.stop()
            }
        }
        let token = try await Self.login(gateway, client, user: "alice", pathway: "web")

        for path in Self.escapes {
            let answer = try await Self.send(
                "GET /p/web\(path) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\n\r\n", to: gateway)
            #expect(answer.hasPrefix("HTTP/1.1 400") && answer.contains("invalid_request"), "\(path): \(answer)")
        }
        for target in ["/p/%77eb/x", "/p/WEB/x", "/p/Web/x"] {
            let answer = try await Self.send(
                "GET \(target) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n", to: gateway)
            #expect(answer.hasPrefix("HTTP/1.1 4"), "\(target): \(answer)")
        }
        #expect(upstream.received.isEmpty, "the upstream received: \(String(decoding: upstream.received, as: UTF8.self))")

        let answer = try await Self.send(
            "GET /p/web/a/b;v=1?q=..%2f HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n", to: gateway)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(String(decoding: upstream.received, as: UTF8.self).hasPrefix("GET /base/a/b;v=1?q=..%2f HTTP/1.1\r\n"))
    }

    /// A real PAM login; the grant's token.
    static func login(_ gateway: TestGateway, _ client: HTTPSTestClient, user: String, pathway: String) async throws -> String {
        let body = TestGateway.grantBody(
            user: user, password: gateway.pam.password(user), otp: try await gateway.pam.code(user), pathway: pathway)
        let response = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body)
        guard response.status == 201, let token = response.json["token"] as? String else {
            throw TestSupportError("login failed: \(response.status) \(response.text)")
        }
        return token
    }

    /// Sends `request` on a new TLS connection; the answer, once complete or the connection closed.
    static func send(_ request: String, to gateway: TestGateway) async throws -> String {
        let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
        try await connection.send(request)
        await connection.wait { $0.isClosed || Self.answerIsComplete($0.text) }
        let text = connection.text
        await connection.close()
        return text
    }

    /// Whether `text` holds a whole answer framed by `Content-Length`.
    static func answerIsComplete(_ text: String) -> Bool {
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let head = text[..<end.lowerBound].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingPrefix(" "))
        else { return false }
        return text.utf8.count - text.utf8.distance(from: text.startIndex, to: end.upperBound) >= length
    }

    /// An HTTP upstream that records the exact bytes it receives and answers each request head with
    /// `200 ok` (a body is not looked for: a smuggled request shows in `received`).
    final class RecordingUpstream: Sendable {
        let port: Int
        private let channel: any Channel
        private let recorder: Recorder

        /// Every byte received so far, on all connections.
        var received: [UInt8] { recorder.bytes.withLock { $0 } }

        init() async throws {
            let recorded = Recorder()
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RecordingHandler(recorder: recorded))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .get()
            guard let port = channel.localAddress?.port else { throw TestSupportError("the recording upstream did not bind") }
            self.port = port
            recorder = recorded
        }

        func stop() async {
            try? await channel.close()
        }
    }

    final class Recorder: Sendable {
        let bytes = Mutex<[UInt8]>([])
    }

    final class RecordingHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let recorder: Recorder
        /// Bytes since the last head's end, searched for the next one.
        private var pending: [UInt8] = []

        init(recorder: Recorder) { self.recorder = recorder }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(unwrapInboundIn(data).readableBytesView)
            recorder.bytes.withLock { $0 += bytes }
            pending += bytes
            while let end = Self.headEnd(pending) {
                pending.removeFirst(end)
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
            }
        }

        static func headEnd(_ bytes: [UInt8]) -> Int? {
            guard bytes.count >= 4 else { return nil }
            for index in 0...(bytes.count - 4) where bytes[index..<index + 4].elementsEqual("\r\n\r\n".utf8) { return index + 4 }
            return nil
        }
    }
}
