import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import Testing

/// The on-call engineer's and the operator's commands against a real gateway.
@Suite struct ProxyCLITests {
    /// Logs in through the CLI (token stored under `home`) and returns the environment for later commands.
    static func cliLogin(_ fixture: ProxyTests.Fixture, user: String, pathway: String) async throws -> [String: String] {
        let environment = [
            "BREAKGLASS_HOME": fixture.gateway.directory.file("home-\(user)"), "BREAKGLASS_GATEWAY": fixture.gateway.baseURL,
            "BREAKGLASS_CA": fixture.gateway.pki.caPath,
        ]
        let code = try await fixture.gateway.pam.code(user)
        let login = try await ProcessRunner.run(
            try ProcessRunner.breakglassExecutable(),
            ["login", pathway, "--user", user, "--reason", "cli test", "--password-stdin"],
            stdin: "\(fixture.gateway.pam.password(user))\n\(code)\n",
            environment: environment)
        guard login.status == 0 else { throw TestSupportError("login failed: \(login.stderr)") }
        // What to run next follows the pathway's kind (issue 19 item 4: a tcp pathway got a curl line).
        let kind = fixture.gateway.service.runtime.store.current.policy.pathways[pathway]?.kind
        #expect(login.stdout.contains("breakglass tunnel \(pathway)") == (kind == .tcp), "\(login.stdout)")
        #expect(login.stdout.contains("curl ") == (kind == .http), "\(login.stdout)")
        return environment
    }

    /// Starts a long-running CLI command (its output discarded); the caller kills it.
    static func start(_ binary: String, _ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// A plain TCP connection to a local listener once it is up (tried for 5 s); nil if it never is.
    static func connect(port: Int) async -> TLSTestConnection? {
        for _ in 0..<100 {
            if let connection = try? await TLSTestConnection(port: port, caPath: nil) { return connection }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    @Test func connectTunnelAndLogoutCommands() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        let environment = try await Self.cliLogin(fixture, user: "alice", pathway: "echo")

        // connect: standard input through the tunnel and back; the end of input ends the session.
        let connect = try await ProcessRunner.run(
            binary, ["connect", "echo"], stdin: "through stdin and stdout\n", environment: environment, timeout: .seconds(20))
        #expect(connect.status == 0, "\(connect.stderr)")
        #expect(connect.stdout == "through stdin and stdout\n")

        // tunnel: a local listener; each accepted connection is one tunnel.
        let port = try TestPorts.unused()
        let tunnel = try Self.start(binary, ["tunnel", "echo", "--listen", "127.0.0.1:\(port)"], environment: environment)
        defer { kill(tunnel.processIdentifier, SIGKILL) }
        let connection = try #require(await Self.connect(port: port), "the tunnel command did not listen on \(port)")
        try await connection.send("via the local listener\n")
        #expect(await connection.wait { $0.text == "via the local listener\n" })

        // logout ends the grant: the live tunnel is cut and the token is gone.
        let logout = try await ProcessRunner.run(binary, ["logout", "echo"], environment: environment)
        #expect(logout.status == 0, "\(logout.stderr)")
        #expect(logout.stdout.contains("Released: pathway echo"))
        #expect(await connection.wait(timeout: .seconds(3)) { $0.inputClosed })
        let token = try await ProcessRunner.run(binary, ["token", "echo"], environment: environment)
        #expect(token.status != 0)
        #expect(fixture.events(.grantReleased).count == 1)

        // The next connection is refused for the released grant: the tunnel command ends, exit 2
        // (issue 19 item 5: it kept listening, refusing every connection until the grant's expiry).
        _ = await Self.connect(port: port)
        let deadline = ContinuousClock.now + .seconds(10)
        while tunnel.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!tunnel.isRunning)
        if !tunnel.isRunning { #expect(tunnel.terminationStatus == 2) }
    }

    /// `breakglass proxy`: a plain HTTP CONNECT proxy on loopback for clients such as ncat, which
    /// can speak neither TLS to a proxy nor a bearer token.
    @Test func localProxyCarriesNcatThroughTheGateway() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        let ncat = try #require(ProcessRunner.which("ncat"), "ncat is installed by Scripts/test")
        let environment = try await Self.cliLogin(fixture, user: "alice", pathway: "echo")
        let refused = try await ProcessRunner.run(binary, ["proxy", "--listen", "0.0.0.0:0"], environment: environment)
        #expect(refused.status != 0 && refused.stderr.contains("loopback"), "\(refused.stderr)")

        let port = try TestPorts.unused()
        let proxy = try Self.start(binary, ["proxy", "--listen", "127.0.0.1:\(port)"], environment: environment)
        defer { kill(proxy.processIdentifier, SIGKILL) }
        let plain = try #require(await Self.connect(port: port), "breakglass proxy did not listen on \(port)")

        // A pathway without a stored grant, and a request that is not CONNECT: answers that say why.
        try await plain.send("CONNECT web:443 HTTP/1.1\r\nHost: web:443\r\n\r\n")
        #expect(await plain.wait { $0.text.hasPrefix("HTTP/1.1 403") && $0.text.contains("no grant stored for web") })
        let other = try await TLSTestConnection(port: port, caPath: nil)
        try await other.send("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        #expect(await other.wait { $0.text.hasPrefix("HTTP/1.1 405") && $0.text.contains("CONNECT PATHWAY:PORT") })

        // ncat through the local proxy, the gateway and the tunnel to the echo upstream and back.
        let carried = try await ProcessRunner.run(
            ncat, ["--proxy", "127.0.0.1:\(port)", "--proxy-type", "http", "echo", "7"], stdin: "through ncat\n",
            timeout: .seconds(20))
        #expect(carried.status == 0, "\(carried.stderr)")
        #expect(carried.stdout == "through ncat\n")

        // A client that sends its bytes and closes its side before the tunnel is up: both get through.
        let eager = try await TLSTestConnection(port: port, caPath: nil)
        try await eager.send("CONNECT echo:7 HTTP/1.1\r\nHost: echo:7\r\n\r\nsent early\n")
        try await eager.closeOutput()
        #expect(await eager.wait { $0.text == "HTTP/1.1 200 Connection established\r\n\r\nsent early\n" && $0.inputClosed })
        #expect(fixture.events(.tunnelOpened).count == 2)
    }

    @Test func revokeThroughTheAdminSocketCutsAtOnceAndSurvivesARestart() async throws {
        let fixture = try await ProxyTests.fixture(durableAudit: true)
        let binary = try ProcessRunner.breakglassExecutable()
        let socket = fixture.gateway.directory.file("audit/admin.sock")
        let bob = try await fixture.login("bob", pathway: "web")
        let carol = try await fixture.login("carol", pathway: "web")
        let drip = try await fixture.rawRequest("/p/web/drip", token: bob.token)
        #expect(await drip.wait { $0.text.contains("drip\n") })

        let listed = try await ProcessRunner.run(binary, ["sessions", "--socket", socket])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.contains(bob.session) && listed.stdout.contains(carol.session))

        let revoke = try await ProcessRunner.run(binary, ["revoke", "--socket", socket, "--user", "bob", "--reason", "drill"])
        #expect(revoke.status == 0, "\(revoke.stderr)")
        #expect(revoke.stdout.contains("Revoked: session \(bob.session) (bob on web), 1 connection(s) cut"))
        #expect(await drip.wait(timeout: .seconds(2)) { $0.inputClosed })
        #expect(try await fixture.get("/p/web/echo", token: bob.token).status == 401)
        let none = try await ProcessRunner.run(binary, ["revoke", "--socket", socket, "--all", "--session", "x"])
        #expect(none.status != 0)
        #expect(none.stderr.contains("exactly one of"))

        // After a restart bob's token stays refused; carol's grant still works.
        let restarted = try await fixture.gateway.restarted()
        let client = try HTTPSTestClient(caPath: restarted.pki.caPath)
        let bobAfter = try await client.request(
            .GET, restarted.baseURL + "/p/web/echo", headers: [("Authorization", "Bearer \(bob.token)")])
        #expect(bobAfter.status == 401)
        #expect(bobAfter.errorMessage?.contains("revoked") == true, "\(bobAfter.text)")
        let carolAfter = try await client.request(
            .GET, restarted.baseURL + "/p/web/echo", headers: [("Authorization", "Bearer \(carol.token)")])
        #expect(carolAfter.status == 200)
        let revoked = try AuditLogReader.read(directory: restarted.directory.file("audit")).entries.compactMap(\.record)
            .map(\.event).filter { $0.kind == .grantRevoked }
        #expect(revoked.count == 1)
        #expect(revoked.first?.fields["session"] == .string(bob.session))
        #expect(revoked.first?.fields["reason"] == .string("drill"))
        #expect(revoked.first.map { "\($0.fields["by"] ?? .string(""))".hasPrefix("operator ") } == true)
        await client.shutdown()
        await fixture.client.shutdown()
        await fixture.upstream.stop()
        await fixture.echo.stop()
        await restarted.stop()
    }
}
