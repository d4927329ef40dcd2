import BreakGlassCore
import BreakGlassGateway
import BreakGlassTestSupport
import Foundation
import Logging
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

/// Tunnels (CONNECT and WebSocket), the time box, release, and streaming with bounded memory.
@Suite struct ProxyTunnelTests {
    /// A masked client text frame (RFC 6455 §5.2).
    static func textFrame(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        return [0x81, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<$0 + needle.count]) == needle }
    }

    @Test func connectTunnelCarriesBytesBothWaysAndIsAudited() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "echo")
        let tunnel = try await fixture.tunnel("echo", token: login.token)
        #expect(tunnel.text.hasPrefix("HTTP/1.1 200 Connection Established\r\n\r\n"), "\(tunnel.text)")
        try await tunnel.send("ping through the tunnel\n")
        #expect(await tunnel.wait { $0.text.hasSuffix("ping through the tunnel\n") })
        // Half close: the echo server answers everything and then closes its side.
        try await tunnel.send("last words\n")
        try await tunnel.closeOutput()
        #expect(await tunnel.wait { $0.inputClosed })
        #expect(tunnel.text.hasSuffix("last words\n"))
        await tunnel.close()
        #expect(await Self.eventually { fixture.events(.tunnelClosed).count == 1 })
        let opened = try #require(fixture.events(.tunnelOpened).first)
        #expect(opened.fields["session"] == .string(login.session))
        #expect(opened.fields["mode"] == .string("connect"))
        let closed = try #require(fixture.events(.tunnelClosed).first)
        #expect(closed.fields["bytes_in"] == .integer(35))
        #expect(closed.fields["bytes_out"] == .integer(35))
    }

    /// A client that sends its data and at once ends its side still gets the whole answer.
    @Test func dataThenImmediateHalfCloseGetsTheAnswer() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "echo")
        let tunnel = try await fixture.tunnel("echo", token: login.token)
        #expect(tunnel.text.hasPrefix("HTTP/1.1 200"))
        try await tunnel.send("short and done\n")
        try await tunnel.closeOutput()
        #expect(await tunnel.wait(timeout: .seconds(5)) { $0.text.hasSuffix("short and done\n") && $0.inputClosed }, "\(tunnel.text)")
        await tunnel.close()
    }

    /// A client may send data right behind its CONNECT head, in the same packet; none of it is lost.
    @Test func bytesSentRightAfterConnectArePassedOn() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "echo")
        let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await connection.send("CONNECT echo:1 HTTP/1.1\r\nProxy-Authorization: Bearer \(login.token)\r\n\r\nearly bytes\n")
        #expect(await connection.wait(timeout: .seconds(5)) { $0.text.hasSuffix("\r\n\r\nearly bytes\n") }, "\(connection.text)")
        await connection.close()
    }

    @Test func standardClientsUseTheTunnel() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let curl = try #require(ProcessRunner.which("curl"), "curl is installed by Scripts/test")
        let login = try await fixture.login("alice", pathway: "rawweb")
        // curl through the gateway as an HTTPS proxy, tunnelling plain HTTP to the upstream.
        let result = try await ProcessRunner.run(
            curl,
            [
                "-sS", "--proxytunnel", "--proxy", fixture.gateway.baseURL, "--proxy-cacert", fixture.gateway.pki.caPath,
                "--proxy-header", "Proxy-Authorization: Bearer \(login.token)", "http://rawweb:\(fixture.upstream.port)/echo/through-curl",
            ],
            timeout: .seconds(30))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("through-curl"), "\(result.stdout)")

        let openssl = try #require(ProcessRunner.which("openssl"), "openssl is installed by Scripts/test")
        let echoLogin = try await fixture.login("bob", pathway: "echo")
        // s_client may keep the connection after its input ends; `timeout` ends it once the echo is back
        // (with SIGKILL: a process that hosts a gateway ignores SIGTERM, and its children inherit that).
        let request = "CONNECT echo:1 HTTP/1.1\\r\\nProxy-Authorization: Bearer \(echoLogin.token)\\r\\n\\r\\nhello from s_client\\n"
        let session = try await ProcessRunner.run(
            "/bin/sh",
            [
                "-c",
                "(printf '\(request)'; sleep 2) | timeout -s KILL 4 \(openssl) s_client -quiet -connect 127.0.0.1:\(fixture.gateway.port) -CAfile \(fixture.gateway.pki.caPath)",
            ],
            timeout: .seconds(20))
        #expect(session.stdout.contains("HTTP/1.1 200 Connection Established"), "\(session.stdout) \(session.stderr)")
        #expect(session.stdout.contains("hello from s_client"))
    }

    @Test func webSocketIsProxied() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let login = try await fixture.login("alice", pathway: "web")
        let socket = try await fixture.webSocket("web", token: login.token)
        #expect(socket.text.hasPrefix("HTTP/1.1 101"), "\(socket.text)")
        #expect(socket.text.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        try await socket.send(Self.textFrame("hello websocket"))
        #expect(await socket.wait { Self.contains($0.bytes, [0x81, 15] + Array("hello websocket".utf8)) })
        await socket.close()
        #expect(await Self.eventually { fixture.events(.tunnelClosed).contains { $0.fields["mode"] == .string("websocket") } })
    }

    /// Connections of every kind on grants that end together: a kept-alive request, a streaming
    /// answer and a WebSocket on `web`'s grant, and a CONNECT tunnel on `echo`'s.
    struct ExpiringConnections {
        let web: ProxyTests.Fixture.Login
        let echo: ProxyTests.Fixture.Login
        let keepAlive: TLSTestConnection
        let drip: TLSTestConnection
        let socket: TLSTestConnection
        let tunnel: TLSTestConnection
        /// Before the grants were asked for: they last at least until `duration` after it.
        let issued: ContinuousClock.Instant
        let duration: Duration

        var all: [TLSTestConnection] { [keepAlive, drip, socket, tunnel] }
        /// Every connection was set up and is open.
        var ready: Bool {
            keepAlive.text.hasPrefix("HTTP/1.1 200") && drip.text.contains("drip\n") && socket.text.hasPrefix("HTTP/1.1 101")
                && tunnel.text.hasSuffix("still here\n") && all.allSatisfy { !$0.isClosed }
        }

        static func open(_ fixture: ProxyTests.Fixture, users: (String, String), seconds: Int) async throws -> Self {
            let issued = ContinuousClock.now
            let web = try await fixture.login(users.0, pathway: "web", duration: "\(seconds)s")
            let echo = try await fixture.login(users.1, pathway: "echo", duration: "\(seconds)s")
            let keepAlive = try await fixture.rawRequest("/p/web/echo", token: web.token)
            let drip = try await fixture.rawRequest("/p/web/drip", token: web.token)
            await drip.wait { $0.text.contains("drip\n") || !$0.text.hasPrefix("HTTP/1.1 200") }
            let socket = try await fixture.webSocket("web", token: web.token)
            let tunnel = try await fixture.tunnel("echo", token: echo.token)
            if tunnel.text.hasPrefix("HTTP/1.1 200") {
                try? await tunnel.send("still here\n")
                await tunnel.wait { $0.text.hasSuffix("still here\n") || $0.isClosed }
            }
            return Self(
                web: web, echo: echo, keepAlive: keepAlive, drip: drip, socket: socket, tunnel: tunnel, issued: issued,
                duration: .seconds(seconds))
        }
    }

    @Test func expiryCutsEveryKindOfConnectionAndIsAuditedOnce() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        // The grants must outlive the set-up, which a busy machine stretches: a set-up that is not
        // complete only once the grants' time is up is tried again, with longer grants for other
        // users. One that fails while its grants are live fails the test.
        var live = try await ExpiringConnections.open(fixture, users: ("alice", "bob"), seconds: 8)
        if !live.ready, live.issued.duration(to: .now) >= live.duration {
            for connection in live.all { await connection.close() }
            live = try await ExpiringConnections.open(fixture, users: ("carol", "dave"), seconds: 24)
        }
        #expect(live.keepAlive.text.hasPrefix("HTTP/1.1 200"), "\(live.keepAlive.text.prefix(200))")
        #expect(live.drip.text.contains("drip\n"), "\(live.drip.text.prefix(200))")
        #expect(live.socket.text.hasPrefix("HTTP/1.1 101"), "\(live.socket.text.prefix(200))")
        #expect(live.tunnel.text.hasSuffix("still here\n"), "\(live.tunnel.text.prefix(200))")
        for connection in live.all { #expect(!connection.isClosed) }
        let (web, tunnel) = (live.web, live.tunnel)
        // The tunnel is busy when the time is up: bytes keep flowing through it until it is cut.
        let sender = Task {
            while !tunnel.isClosed, !Task.isCancelled {
                try? await tunnel.send(Array(repeating: UInt8(ascii: "x"), count: 16 << 10))
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { sender.cancel() }
        // Every connection goes within a few seconds of the grants' end.
        let cut = live.issued + live.duration + .seconds(5)
        for connection in live.all {
            #expect(await connection.wait(timeout: ContinuousClock.now.duration(to: cut)) { $0.inputClosed })
        }
        // Only these grants' records: a set-up tried again left two more grants to expire.
        let sessions = [AuditValue.string(web.session), .string(live.echo.session)]
        let expired = { fixture.events(.grantExpired).filter { event in sessions.contains { event.fields["session"] == $0 } } }
        #expect(await Self.eventually { expired().count == 2 })
        // Time for a second record of either expiry to show up, if one were written.
        try await Task.sleep(for: .milliseconds(300))
        #expect(expired().count == 2)
        let webEnd = try #require(expired().first { $0.fields["session"] == .string(web.session) })
        #expect(webEnd.fields["connections_closed"] == .integer(3))
        #expect(try await fixture.get("/p/web/echo", token: web.token).status == 401)
    }

    @Test func releaseCutsLiveConnections() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let web = try await fixture.login("alice", pathway: "web")
        let drip = try await fixture.rawRequest("/p/web/drip", token: web.token)
        let socket = try await fixture.webSocket("web", token: web.token)
        #expect(await drip.wait { $0.text.contains("drip\n") })
        #expect(fixture.gateway.service.proxy.registry.connectionCount(web.session) == 2)
        let released = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(web.session)", headers: [("Authorization", "Bearer \(web.token)")])
        #expect(released.status == 200)
        #expect(await drip.wait(timeout: .seconds(2)) { $0.inputClosed })
        #expect(await socket.wait(timeout: .seconds(2)) { $0.inputClosed })
        let event = try #require(fixture.events(.grantReleased).first)
        #expect(event.fields["connections_closed"] == .integer(2))
        #expect(event.fields["by"] == .string("alice"))
        let again = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(web.session)", headers: [("Authorization", "Bearer \(web.token)")])
        #expect(again.status == 401)
    }

    @Test func endedSessionsStayEndedAcrossARestart() async throws {
        let folder = try TestDirectory("ended-sessions")
        defer { folder.remove() }
        let file = folder.file("ended-sessions.json")
        let log = TestLog()
        let logger = log.logger(label: "test", level: .critical)
        let audit = MemoryAuditSink()
        let info = SessionRegistry.SessionInfo(
            session: "a1", user: "alice", pathway: "web", issuedAt: Date(), expiresAt: Date().addingTimeInterval(600))
        let first = SessionRegistry(
            audit: audit, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file, logger: logger)
        first.track(info)
        #expect(await first.end(["a1"], as: .revoked, by: "operator").count == 1)
        let restarted = SessionRegistry(
            audit: audit, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file, logger: logger)
        #expect(!restarted.isLive("a1"))
        #expect(restarted.endingDescription("a1") == "revoked")
        // A damaged file fails closed: grants from before the start are refused.
        try "not json".write(toFile: file, atomically: true, encoding: .utf8)
        let damaged = SessionRegistry(
            audit: audit, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file, logger: logger)
        let channel = NIOAsyncTestingChannel()
        #expect(damaged.admit(info, channel: channel)?.message.contains("log in again") == true)
        #expect(log.contains("cannot read the sessions file"))
        _ = try? await channel.finish()
    }

    /// A grant that expires while the gateway is down gets its `grant.expired` at the next start,
    /// once; a live grant is kept across a restart and expires on time; probe grants are not kept.
    @Test func grantsExpiringWhileTheGatewayIsDownAreRecordedAtStart() async throws {
        let folder = try TestDirectory("sessions-down")
        defer { folder.remove() }
        let file = folder.file("ended-sessions.json")
        let log = TestLog()
        let logger = log.logger(label: "test", level: .critical)
        let now = Date()
        func info(_ session: String, _ seconds: Double, tag: Grant.Tag? = nil) -> SessionRegistry.SessionInfo {
            SessionRegistry.SessionInfo(
                session: session, user: "alice", pathway: "web", issuedAt: now, expiresAt: now.addingTimeInterval(seconds), tag: tag)
        }
        // The first run's timers die with its event loop: the gateway is down when `short` expires.
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let first = SessionRegistry(audit: MemoryAuditSink(), clock: SystemWallClock(), group: loop, endedFile: file, logger: logger)
        first.track(info("short", 0.5))
        first.track(info("long", 600))
        first.track(info("probe", 0.5, tag: .probe))
        try await loop.shutdownGracefully()
        try await Task.sleep(for: .milliseconds(800))

        let audit = MemoryAuditSink()
        let second = SessionRegistry(
            audit: audit, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file, logger: logger)
        #expect(second.isLive("long") && !second.isLive("short"))
        // While the audit log fails, the expiry stays owed (and in the file).
        audit.setFailing(true)
        await second.recordExpiredWhileDown()
        #expect(audit.events.isEmpty)
        #expect(log.contains("audit failed for the end of a grant"))
        #expect(try String(contentsOfFile: file, encoding: .utf8).contains("\"short\""))
        audit.setFailing(false)
        await second.recordExpiredWhileDown()
        await second.recordExpiredWhileDown()
        let expired = audit.events(.grantExpired)
        #expect(expired.map { $0.fields["session"] } == [.string("short")])
        #expect(expired.first?.fields["connections_closed"] == .integer(0))
        // Kept to the millisecond.
        if case .time(let expiry) = expired.first?.fields["expires_at"] {
            #expect(abs(expiry.timeIntervalSince(now.addingTimeInterval(0.5))) < 0.002)
        } else {
            Issue.record("expires_at is missing")
        }
        #expect(expired.first.map { "\($0.fields["reason"] ?? .string(""))".contains("recorded at start") } == true)
        // A grant that expires while this run is up is recorded on time and leaves the file.
        second.track(info("soon", 1.2))
        #expect(await Self.eventually { audit.events(.grantExpired).count == 2 })
        // Recorded, then dropped from the file (rewritten off the caller's thread).
        #expect(await Self.eventually { (try? String(contentsOfFile: file, encoding: .utf8))?.contains("\"soon\"") == false })
        await second.flush()

        let third = MemoryAuditSink()
        let restarted = SessionRegistry(
            audit: third, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file, logger: logger)
        await restarted.recordExpiredWhileDown()
        #expect(third.events(.grantExpired).isEmpty)
        #expect(restarted.isLive("long"))
        let kept = try String(contentsOfFile: file, encoding: .utf8)
        #expect(kept.contains("\"long\"") && !kept.contains("\"short\"") && !kept.contains("\"soon\"") && !kept.contains("\"probe\""))
    }

    /// The registry's number moves, before a session's end takes effect, on every end that could
    /// refuse a kept-alive connection's next request (release, revocation, expiry); a probe session's
    /// end does not move it, as probe requests are checked in full every time.
    @Test func sessionEndsMoveTheRegistrysNumber() async throws {
        let now = Date()
        func info(_ session: String, _ seconds: Double, tag: Grant.Tag? = nil) -> SessionRegistry.SessionInfo {
            SessionRegistry.SessionInfo(
                session: session, user: "alice", pathway: "web", issuedAt: now, expiresAt: now.addingTimeInterval(seconds), tag: tag)
        }
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let registry = SessionRegistry(
            audit: MemoryAuditSink(), clock: SystemWallClock(), group: loop, endedFile: nil, logger: TestLog().logger(label: "test"))
        for session in [info("released", 600), info("revoked", 600), info("probe", 600, tag: .probe)] { registry.track(session) }
        var seen = registry.generation
        await registry.end(["probe"], as: .revoked, by: "test")
        #expect(registry.generation == seen)
        for (session, ending) in [("released", SessionRegistry.Ending.released), ("revoked", .revoked)] {
            await registry.end([session], as: ending, by: "test")
            #expect(registry.generation > seen, "\(session)")
            seen = registry.generation
        }
        // Ending what has already ended changes nothing.
        await registry.end(["released"], as: .revoked, by: "test")
        #expect(registry.generation == seen)
        registry.track(info("short", 0.3))
        registry.track(info("short-probe", 0.3, tag: .probe))
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while registry.generation == seen, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(registry.generation == seen + 1)
        // The probe's expiry (due at the same time) leaves it there.
        try await Task.sleep(for: .milliseconds(300))
        #expect(!registry.isLive("short-probe"))
        #expect(registry.generation == seen + 1)
        try await loop.shutdownGracefully()
    }

    @Test func largeBodiesStreamBothWaysWithBoundedMemory() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let curl = try #require(ProcessRunner.which("curl"), "curl is installed by Scripts/test")
        let login = try await fixture.login("alice", pathway: "web")
        let size = 768 << 20
        let upload = fixture.gateway.directory.file("upload.bin")
        #expect(FileManager.default.createFile(atPath: upload, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: upload))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        let baseline = Self.residentBytes()
        let peak = PeakSampler()
        let sampler = Task { while !Task.isCancelled { peak.sample(Self.residentBytes()); try? await Task.sleep(for: .milliseconds(20)) } }
        let common = ["-sS", "--cacert", fixture.gateway.pki.caPath, "-H", "Authorization: Bearer \(login.token)"]
        let up = try await ProcessRunner.run(
            curl, common + ["-T", upload, fixture.gateway.baseURL + "/p/web/count"], timeout: .seconds(120))
        let down = try await ProcessRunner.run(
            curl, common + ["-o", "/dev/null", "-w", "%{size_download}", fixture.gateway.baseURL + "/p/web/bytes/\(size)"],
            timeout: .seconds(120))
        sampler.cancel()
        #expect(up.status == 0, "\(up.stderr)")
        #expect(up.stdout.contains("\"bytes\":\(size)"), "\(up.stdout)")
        #expect(down.stdout == "\(size)", "\(down.stderr)")
        // Buffering either body would add at least 768 MiB. The bound is half that: the rest absorbs
        // what the other tests running in parallel in this process allocate meanwhile (up to 178 MiB
        // seen with 256 MiB bodies, the size this test used before).
        let growth = peak.value - baseline
        #expect(growth < size / 2, "resident memory grew by \(growth >> 20) MiB while 2 x \(size >> 20) MiB passed")
    }

    static func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<300 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}

/// The largest value seen.
final class PeakSampler: Sendable {
    private let peak = Mutex(0)
    func sample(_ value: Int) { peak.withLock { $0 = max($0, value) } }
    var value: Int { peak.withLock { $0 } }
}
