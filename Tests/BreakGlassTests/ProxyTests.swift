import BreakGlassCerts
import BreakGlassCore
import BreakGlassGateway
import BreakGlassTestSupport
import Foundation
import NIOHTTP1
import NIOSSL
import Testing

/// The data path end to end: real TLS to the gateway, real upstreams on 127.0.0.1.
@Suite struct ProxyTests {
    struct Fixture {
        let upstream: TestUpstream
        let echo: TestTCPEchoServer
        let gateway: TestGateway
        let client: HTTPSTestClient

        func stop() async {
            await client.shutdown()
            await gateway.stop()
            await upstream.stop()
            await echo.stop()
        }

        struct Login {
            var token: String
            var session: String
        }

        /// A real PAM login for `pathway`; `steps` picks a later TOTP code for a second login in the same window.
        func login(_ user: String, pathway: String, duration: String? = nil, steps: Int = 0) async throws -> Login {
            let body = TestGateway.grantBody(
                user: user, password: gateway.pam.password(user), otp: try await gateway.pam.code(user, steps: steps), pathway: pathway,
                duration: duration)
            let response = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body)
            guard response.status == 201, let token = response.json["token"] as? String, let session = response.json["session"] as? String
            else { throw TestSupportError("login failed: \(response.status) \(response.text)") }
            return Login(token: token, session: session)
        }

        func get(_ path: String, token: String?, headers: [(String, String)] = []) async throws -> HTTPSTestClient.Response {
            var all = headers
            if let token { all.append(("Authorization", "Bearer \(token)")) }
            return try await client.request(.GET, gateway.baseURL + path, headers: all)
        }

        /// A raw TLS connection that has opened a CONNECT tunnel to `pathway`.
        func tunnel(_ pathway: String, token: String) async throws -> TLSTestConnection {
            let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
            try await connection.send(
                "CONNECT \(pathway):\(echo.port) HTTP/1.1\r\nHost: \(pathway)\r\nProxy-Authorization: Bearer \(token)\r\n\r\n")
            await connection.wait { $0.text.contains("\r\n\r\n") || $0.isClosed }
            return connection
        }

        /// A raw TLS connection with a proxied request in progress (`/drip` never ends) or done.
        func rawRequest(_ path: String, token: String, extra: String = "") async throws -> TLSTestConnection {
            let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
            try await connection.send("GET \(path) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\n\(extra)\r\n")
            await connection.wait { $0.text.contains("\r\n\r\n") || $0.isClosed }
            return connection
        }

        /// A WebSocket through the gateway to the upstream's echo, upgraded.
        func webSocket(_ pathway: String, token: String) async throws -> TLSTestConnection {
            try await rawRequest(
                "/p/\(pathway)/ws", token: token,
                extra:
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            )
        }

        func events(_ kind: AuditEvent.Kind) -> [AuditEvent] { gateway.audit.events(kind) }
    }

    static let users = "{ users: [alice, bob, carol, dave] }"

    static func fixture(slowTimeout: String = "1s", durableAudit: Bool = false, limits: String? = nil) async throws -> Fixture {
        let upstream = try await TestUpstream()
        let echo = try await TestTCPEchoServer()
        let dead = try TestPorts.unused()
        let policy = """
            pathways:
              web:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: \(users)
                default_duration: 10m
                max_duration: 30m
              based:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)/base
                allow: \(users)
              slow:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: \(users)
                max_connections: 2
                response_timeout: \(slowTimeout)
              dead:
                kind: http
                upstream: http://127.0.0.1:\(dead)
                allow: \(users)
              echo:
                kind: tcp
                upstream: 127.0.0.1:\(echo.port)
                allow: \(users)
              rawweb:
                kind: tcp
                upstream: 127.0.0.1:\(upstream.port)
                allow: \(users)
              office:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: \(users)
                source_cidrs: [127.0.0.0/8]

            """
        let gateway = try await TestGateway(limits: limits, policyBody: policy, durableAudit: durableAudit)
        return Fixture(upstream: upstream, echo: echo, gateway: gateway, client: try HTTPSTestClient(caPath: gateway.pki.caPath))
    }

    static func header(_ echoed: [String: Any], _ name: String) -> [String] {
        ((echoed["headers"] as? [[String]]) ?? []).filter { $0.first?.lowercased() == name.lowercased() }.compactMap { $0.last }
    }

    @Test func requestsAreProxiedWithHeaderHygieneAndAudited() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let response = try await fixture.get(
            "/p/web/echo/a?ticket=INC-1&secret=hunter2", token: login.token,
            headers: [
                ("X-BreakGlass-User", "mallory"), ("X-Forwarded-For", "6.6.6.6"), ("X-Custom", "kept"), ("Proxy-Authorization", "Bearer x"),
                ("Connection", "keep-alive, X-Drop-Me"), ("X-Drop-Me", "hop"),
            ])
        #expect(response.status == 200, "\(response.text)")
        let echoed = response.json
        #expect(echoed["uri"] as? String == "/echo/a?ticket=INC-1&secret=hunter2")
        #expect(Self.header(echoed, "authorization").isEmpty)
        #expect(Self.header(echoed, "proxy-authorization").isEmpty)
        #expect(Self.header(echoed, "x-drop-me").isEmpty)
        #expect(Self.header(echoed, "x-breakglass-user") == ["alice"])
        #expect(Self.header(echoed, "x-breakglass-session") == [login.session])
        #expect(Self.header(echoed, "x-forwarded-for") == ["127.0.0.1"])
        #expect(Self.header(echoed, "x-forwarded-proto") == ["https"])
        #expect(Self.header(echoed, "host") == ["127.0.0.1:\(fixture.upstream.port)"])
        #expect(Self.header(echoed, "x-custom") == ["kept"])
        #expect(response.headers["Keep-Alive"].isEmpty)

        // A base path is kept in front; the query string goes along.
        let based = try await fixture.get("/p/based/x?y=1", token: try await fixture.login("bob", pathway: "based").token)
        #expect(based.json["uri"] as? String == "/base/x?y=1")

        let requests = fixture.events(.request)
        let first = try #require(requests.first { $0.fields["pathway"] == .string("web") })
        #expect(first.fields["session"] == .string(login.session))
        #expect(first.fields["user"] == .string("alice"))
        #expect(first.fields["method"] == .string("GET"))
        #expect(first.fields["path"] == .string("/echo/a?ticket=&secret="))
        #expect(first.fields["status"] == .integer(200))
        #expect(first.fields["outcome"] == .string("ok"))
        #expect(requests.allSatisfy { !"\($0.fields)".contains("hunter2") && !"\($0.fields)".contains(login.token) })
    }

    @Test func refusalsCarryTheirCodeAndAreAudited() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let web = try await fixture.login("alice", pathway: "web")
        let office = try await fixture.login("bob", pathway: "office")
        // The policy is tightened after the grant: traffic from outside the new blocks is refused.
        let policy = try String(contentsOfFile: fixture.gateway.policyPath, encoding: .utf8)
        try policy.replacingOccurrences(of: "[127.0.0.0/8]", with: "[10.0.0.0/8]").write(
            toFile: fixture.gateway.policyPath, atomically: true, encoding: .utf8)
        _ = await fixture.gateway.service.reloader.reload()

        let none = try await fixture.get("/p/web/echo", token: nil)
        #expect(none.status == 401)
        #expect(none.errorCode == "invalid_token")
        let wrongPathway = try await fixture.get("/p/based/echo", token: web.token)
        #expect(wrongPathway.status == 401)
        #expect(wrongPathway.errorMessage?.contains("for pathway web, not based") == true, "\(wrongPathway.text)")
        let outside = try await fixture.get("/p/office/echo", token: office.token)
        #expect(outside.status == 403)
        #expect(outside.errorCode == "forbidden")
        let traversal = try await fixture.get("/p/web/a/../../admin", token: web.token)
        #expect(traversal.status == 400)
        let tunnelOnHTTP = try await fixture.tunnel("web", token: web.token)
        #expect(tunnelOnHTTP.text.hasPrefix("HTTP/1.1 400"), "\(tunnelOnHTTP.text)")
        await tunnelOnHTTP.close()

        let released = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(web.session)", headers: [("Authorization", "Bearer \(web.token)")])
        #expect(released.status == 200, "\(released.text)")
        let afterRelease = try await fixture.get("/p/web/echo", token: web.token)
        #expect(afterRelease.status == 401)
        #expect(afterRelease.errorMessage?.contains("released") == true)

        // Refusals without valid credentials are summarized per source at their interval's end.
        await fixture.gateway.service.denials.flush()
        let denied = fixture.events(.requestDenied)
        // Two refusals of a live session one by one, and the three without valid credentials (no
        // token, another pathway's, a released session's) in summaries (one, unless an interval
        // ended between them).
        let summaries = denied.filter { $0.fields["count"] != nil }
        #expect(denied.count - summaries.count == 2, "\(denied)")
        let summarized = summaries.reduce(Int64(0)) {
            if case .integer(let count) = $1.fields["count"] { return $0 + count }
            return $0
        }
        #expect(summarized == 3, "\(denied)")
        #expect(summaries.allSatisfy { $0.fields["code"] == .string("invalid_token") }, "\(denied)")
        #expect(denied.contains { $0.fields["code"] == .string("forbidden") && $0.fields["session"] == .string(office.session) })
        #expect(fixture.events(.grantReleased).map { $0.fields["session"] } == [.string(web.session)])
    }

    /// `.` and `..` segments, plain or percent-encoded in any case, encoded slashes and backslashes
    /// cannot leave the upstream's base path; dots elsewhere pass.
    @Test func pathsThatWouldLeaveTheBasePathAreRefused() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "based")
        let refused = [
            "/..", "/a/../b", "/.", "/a/./b", "/%2e%2e/x", "/%2E%2e", "/.%2E/x", "/%2e./x", "/%2e", "/a%2Fb", "/a%2fb", "/a\\b",
            "/%2e%2e%2e",
        ]
        let passed = ["", "/", "/a.b/c", "/.../x", "/a..", "/..a", "/%2", "/a%2", "/%20.", "/x?y=../..", "?q=%2f"]
        for path in refused + passed {
            // A refused path ends its connection (the request is not understood): one each.
            let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
            try await connection.send(
                "GET /p/based\(path) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\nConnection: close\r\n\r\n")
            #expect(await connection.wait { $0.inputClosed }, "\(path): \(connection.text)")
            let answer = connection.text
            if refused.contains(path) {
                #expect(answer.hasPrefix("HTTP/1.1 400") && answer.contains("invalid_request"), "\(path): \(answer)")
            } else {
                #expect(answer.hasPrefix("HTTP/1.1 200"), "\(path): \(answer)")
            }
            await connection.close()
        }
    }

    @Test func aRefusedRequestWithoutBodyKeepsTheConnection() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await connection.send("GET /p/web/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer not-a-token\r\n\r\n")
        #expect(await connection.wait { $0.text.contains("invalid_token") })
        #expect(connection.text.hasPrefix("HTTP/1.1 401"))
        #expect(connection.text.lowercased().contains("connection: keep-alive"))
        try await connection.send("GET /p/web/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\n\r\n")
        #expect(await connection.wait { $0.text.contains("HTTP/1.1 200") })
        #expect(!connection.isClosed)
        // With a body the refusal cannot leave the connection usable: the body was never read.
        let second = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await second.send(
            "POST /p/web/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer not-a-token\r\nContent-Length: 5\r\n\r\nhello")
        #expect(await second.wait(timeout: .seconds(3)) { $0.inputClosed }, "\(second.text)")
        #expect(second.text.hasPrefix("HTTP/1.1 401"))
        await connection.close()
    }

    /// A kept-alive connection's later requests with the same token skip the signature check, but
    /// not the rest: an audit log that cannot record, and a policy reloaded meanwhile, count for
    /// the very next request on the connection.
    @Test func aKeptAliveConnectionIsCheckedAgainOnEachRequest() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("bob", pathway: "office")
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        func send(closing: Bool = false) async throws {
            let close = closing ? "Connection: close\r\n" : ""
            try await connection.send("GET /p/office/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\n\(close)\r\n")
        }
        func count(_ text: String) -> Int { connection.text.components(separatedBy: text).count - 1 }
        try await send()
        #expect(await connection.wait { _ in count("HTTP/1.1 200") == 1 }, "\(connection.text)")

        fixture.gateway.audit.setFailing(true)
        try await send()
        #expect(await connection.wait { _ in count("audit_unavailable") == 1 }, "\(connection.text)")
        #expect(count("HTTP/1.1 503") == 1)
        fixture.gateway.audit.setFailing(false)
        try await send()
        #expect(await connection.wait { _ in count("HTTP/1.1 200") == 2 }, "\(connection.text)")

        // The pathway is closed to this address by a reload: the same connection is refused now.
        let policy = try String(contentsOfFile: fixture.gateway.policyPath, encoding: .utf8)
        try policy.replacingOccurrences(of: "[127.0.0.0/8]", with: "[10.0.0.0/8]").write(
            toFile: fixture.gateway.policyPath, atomically: true, encoding: .utf8)
        _ = await fixture.gateway.service.reloader.reload()
        try await send(closing: true)
        #expect(await connection.wait { _ in count("HTTP/1.1 403") == 1 }, "\(connection.text)")
        #expect(connection.text.contains("forbidden"))
        #expect(await connection.wait(timeout: .seconds(3)) { $0.inputClosed })
        #expect(fixture.events(.request).count == 2)
        #expect(fixture.events(.requestDenied).contains { $0.fields["code"] == .string("forbidden") })
    }

    /// A reload that moves a pathway to another upstream ends the grants issued for the old one
    /// (they were decided for that destination), and new grants reach the new one, not the pool's
    /// kept-alive connections to the old one.
    @Test func aMovedUpstreamGetsTheNextRequest() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let moved = try await TestUpstream()
        defer { Task { await moved.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let before = try await fixture.get("/p/web/echo", token: login.token)
        #expect(before.json["server_port"] as? Int == fixture.upstream.port, "\(before.text)")
        let policy = try String(contentsOfFile: fixture.gateway.policyPath, encoding: .utf8)
        try policy.replacingOccurrences(of: "http://127.0.0.1:\(fixture.upstream.port)\n", with: "http://127.0.0.1:\(moved.port)\n")
            .write(toFile: fixture.gateway.policyPath, atomically: true, encoding: .utf8)
        guard case .loaded = await fixture.gateway.service.reloader.reload() else {
            Issue.record("the edited policy was not loaded")
            return
        }
        let old = try await fixture.rawRequest("/p/web/echo", token: login.token)
        #expect(await old.wait { $0.text.contains("\r\n\r\n{") }, "\(old.text)")
        #expect(old.text.hasPrefix("HTTP/1.1 401") && old.text.contains("revoked"), "\(old.text)")
        await old.close()
        let fresh = try await fixture.login("bob", pathway: "web")
        for _ in 0..<2 {
            let after = try await fixture.get("/p/web/echo", token: fresh.token)
            #expect(after.status == 200, "\(after.text)")
            #expect(after.json["server_port"] as? Int == moved.port, "\(after.text)")
        }
    }

    /// A client that waits for `100 Continue` gets it from the gateway once the upstream is there.
    @Test func expectContinueIsAnswered() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await connection.send(
            "POST /p/web/count HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        #expect(await connection.wait { $0.text.hasPrefix("HTTP/1.1 100 Continue\r\n") }, "\(connection.text)")
        try await connection.send("12345")
        #expect(await connection.wait { $0.text.contains("{\"bytes\":5}") }, "\(connection.text)")
        await connection.close()
    }

    /// Requests sent before the previous answer (HTTP/1.1 pipelining) are answered one by one, in
    /// order, bodies included; bytes that are not HTTP get a 400 with its code, or end the
    /// connection after the answer in progress.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let token = "Authorization: Bearer \(login.token)\r\n"
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await connection.send(
            "GET /p/web/first HTTP/1.1\r\nHost: gw\r\n\(token)\r\n"
                + "POST /p/web/count HTTP/1.1\r\nHost: gw\r\n\(token)Content-Length: 5\r\n\r\nhello"
                + "GET /v1/nothing HTTP/1.1\r\nHost: gw\r\n\r\n"
                + "GET /p/web/fourth HTTP/1.1\r\nHost: gw\r\n\(token)Connection: close\r\n\r\n")
        #expect(await connection.wait { $0.inputClosed }, "\(connection.text)")
        let text = connection.text
        let positions = ["first", "{\"bytes\":5}", "not_found", "fourth"].compactMap { text.range(of: $0)?.lowerBound }
        #expect(positions.count == 4, "\(text)")
        #expect(positions == positions.sorted(), "\(text)")
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 4, "\(text)")
        let paths = fixture.events(.request).compactMap { $0.fields["path"] }
        #expect(paths == [.string("/first"), .string("/count"), .string("/fourth")])

        let garbage = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await garbage.send("HELLO THERE\r\n\r\n")
        #expect(await garbage.wait { $0.inputClosed }, "\(garbage.text)")
        #expect(garbage.text.hasPrefix("HTTP/1.1 400"), "\(garbage.text)")
        #expect(garbage.text.contains("invalid_request"), "\(garbage.text)")

        let trailing = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await trailing.send("GET /p/web/slow/200 HTTP/1.1\r\nHost: gw\r\n\(token)\r\nHELLO THERE\r\n\r\n")
        #expect(await trailing.wait { $0.inputClosed }, "\(trailing.text)")
        #expect(trailing.text.hasPrefix("HTTP/1.1 200"), "\(trailing.text)")
        #expect(trailing.text.contains("slept_ms"), "\(trailing.text)")
        #expect(!trailing.text.contains("HTTP/1.1 400"), "\(trailing.text)")
    }

    /// On shutdown an idle connection is closed at once, and one with a request in progress once it
    /// is answered.
    @Test func shutdownClosesConnectionsWhenTheirAnswerIsOut() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let idle = try await fixture.rawRequest("/p/web/echo", token: login.token)
        #expect(await idle.wait { $0.text.contains("body_bytes") }, "\(idle.text)")
        let busy = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await busy.send("GET /p/web/slow/500 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\n\r\n")
        try await Task.sleep(for: .milliseconds(150))  // the request is at the upstream, which answers after 500 ms
        let stopped = Task { await fixture.gateway.stop() }
        #expect(await idle.wait(timeout: .seconds(5)) { $0.inputClosed })
        #expect(await busy.wait(timeout: .seconds(5)) { $0.inputClosed }, "\(busy.text)")
        #expect(busy.text.hasPrefix("HTTP/1.1 200"), "\(busy.text)")
        #expect(busy.text.contains("slept_ms"), "\(busy.text)")
        await stopped.value
    }

    /// Each request on a kept-alive connection gets the whole `response_timeout` from when it was
    /// sent upstream, not what was left of the previous request's.
    @Test func eachRequestOnAConnectionGetsItsOwnResponseTimeout() async throws {
        // response_timeout 4 s. The second request goes 2 s after the first, and its answer 2.5 s
        // after that: it is in flight when the first request's deadline passes (unless it is sent
        // over 2 s late) and answered after it, and 1.5 s of its own deadline is left for a busy
        // machine (the upstream's timer firing late, the gateway slow to pass the answer on).
        let fixture = try await Self.fixture(slowTimeout: "4s")
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "slow")
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        func send(_ path: String) async throws {
            try await connection.send("GET /p/slow\(path) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(login.token)\r\n\r\n")
        }
        try await send("/echo")
        #expect(await connection.wait { $0.text.contains("body_bytes") }, "\(connection.text)")
        try await Task.sleep(for: .seconds(2))
        try await send("/slow/2500")
        #expect(await connection.wait { $0.text.contains("slept_ms") }, "\(connection.text)")
        #expect(!connection.text.contains("upstream_timeout"), "\(connection.text)")
        try await send("/slow/8000")
        #expect(await connection.wait { $0.text.contains("upstream_timeout") }, "\(connection.text)")
        #expect(connection.text.contains("HTTP/1.1 504"), "\(connection.text)")
        await connection.close()
    }

    /// A pooled connection that the upstream closes as the request arrives is retried once, on a new
    /// connection, for a request without a body; the client never sees the failure.
    @Test func staleKeepAliveConnectionIsRetriedOnce() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        #expect(try await fixture.get("/p/web/drop-next", token: login.token).status == 200)
        let retried = try await fixture.get("/p/web/echo/after-drop", token: login.token)
        #expect(retried.status == 200, "\(retried.text)")
        #expect(retried.json["uri"] as? String == "/echo/after-drop")
    }

    @Test func noAuditNoProxiedRequest() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let echo = try await fixture.login("bob", pathway: "echo")
        fixture.gateway.audit.setFailing(true)
        let refused = try await fixture.get("/p/web/echo", token: login.token)
        #expect(refused.status == 503)
        #expect(refused.errorCode == "audit_unavailable")
        let tunnel = try await fixture.tunnel("echo", token: echo.token)
        #expect(tunnel.text.hasPrefix("HTTP/1.1 503"), "\(tunnel.text)")
        #expect(tunnel.text.contains("audit_unavailable"))
        fixture.gateway.audit.setFailing(false)
        #expect(try await fixture.get("/p/web/echo", token: login.token).status == 200)
    }

    @Test func upstreamTroubleIsNamedAndStaysOnItsPathway() async throws {
        let fixture = try await Self.fixture(slowTimeout: "2s")
        defer { Task { await fixture.stop() } }
        let pool = fixture.gateway.service.proxy.pool
        func settled(_ count: Int) async -> Bool {
            for _ in 0..<500 where pool.openConnections(pathway: "slow") != count { try? await Task.sleep(for: .milliseconds(10)) }
            return pool.openConnections(pathway: "slow") == count
        }
        let dead = try await fixture.get("/p/dead/", token: try await fixture.login("alice", pathway: "dead").token)
        #expect(dead.status == 502)
        #expect(dead.errorCode == "upstream_unreachable")
        #expect(dead.errorMessage?.hasPrefix("pathway dead: cannot connect to http://127.0.0.1:") == true, "\(dead.text)")
        #expect(dead.errorMessage?.hasSuffix(": Connection refused") == true, "\(dead.text)")

        let slow = try await fixture.login("bob", pathway: "slow")
        let timedOut = try await fixture.get("/p/slow/slow/4000", token: slow.token)
        #expect(timedOut.status == 504)
        #expect(timedOut.errorCode == "upstream_timeout")
        #expect(await settled(0))

        // Two sessions hold the slow pathway's two connections (one each: a session's share of two
        // is one); a third session is refused at once, and the other pathway answers while both
        // are still waiting.
        let web = try await fixture.login("carol", pathway: "web")
        let other = try await fixture.login("alice", pathway: "slow", steps: 1)  // alice's current code is used
        let third = try await fixture.login("dave", pathway: "slow")
        let slowOnes = [slow, other].map { login in Task { try await fixture.get("/p/slow/slow/1500", token: login.token) } }
        #expect(await settled(2))
        let busy = try await fixture.get("/p/slow/slow/10", token: third.token)
        #expect(busy.status == 503)
        #expect(busy.errorCode == "upstream_busy")
        let quick = try await fixture.get("/p/web/echo", token: web.token)
        #expect(quick.status == 200)
        #expect(pool.openConnections(pathway: "slow") == 2)
        for task in slowOnes { #expect(try await task.value.status == 200) }
    }

    /// An https upstream is verified: its chain against the pathway's `upstream_ca`, its name against the URL.
    @Test func httpsUpstreamsAreVerified() async throws {
        let folder = try TestDirectory("upstream-pki")
        defer { folder.remove() }
        let authority = try DevCertificateAuthority.generate()
        let caPath = try folder.write("upstream-ca.pem", try authority.certificatePEM())
        func server(_ names: [String]) async throws -> TestUpstream {
            let certificate = try authority.issueServerCertificate(dnsNames: names, ipAddresses: [], validity: .seconds(86_400))
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(try certificate.certificatePEM().utf8)).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(certificate.privateKeyPEM.utf8), format: .pem)))
            return try await TestUpstream(tls: try NIOSSLContext(configuration: configuration))
        }
        let good = try await server(["localhost"])
        let misnamed = try await server(["elsewhere.test"])
        let gatewayPKI = try TestPKI(in: folder)
        let gateway = try await TestGateway(
            policyBody: """
                pathways:
                  secure:
                    kind: http
                    upstream: https://localhost:\(good.port)
                    upstream_ca: \(caPath)
                    allow: \(Self.users)
                  untrusted:
                    kind: http
                    upstream: https://localhost:\(good.port)
                    upstream_ca: \(gatewayPKI.caPath)
                    allow: \(Self.users)
                  misnamed:
                    kind: http
                    upstream: https://localhost:\(misnamed.port)
                    upstream_ca: \(caPath)
                    allow: \(Self.users)

                """)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        func call(_ user: String, _ pathway: String) async throws -> HTTPSTestClient.Response {
            let body = TestGateway.grantBody(
                user: user, password: gateway.pam.password(user), otp: try await gateway.pam.code(user), pathway: pathway)
            let token = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body).json["token"] as? String ?? ""
            return try await client.request(.GET, gateway.baseURL + "/p/\(pathway)/echo", headers: [("Authorization", "Bearer \(token)")])
        }
        let secure = try await call("alice", "secure")
        #expect(secure.status == 200, "\(secure.text)")
        #expect(Self.header(secure.json, "host") == ["localhost:\(good.port)"])
        let untrusted = try await call("bob", "untrusted")
        #expect(untrusted.status == 502)
        #expect(untrusted.errorMessage?.contains("TLS failed") == true, "\(untrusted.text)")
        #expect(untrusted.errorCode == "upstream_unreachable")
        let misnamedAnswer = try await call("carol", "misnamed")
        #expect(misnamedAnswer.status == 502, "\(misnamedAnswer.text)")
        await client.shutdown()
        await gateway.stop()
        await good.stop()
        await misnamed.stop()
    }
}
