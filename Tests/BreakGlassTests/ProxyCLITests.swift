import BreakGlassAudit
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
        return environment
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
        let tunnel = Process()
        tunnel.executableURL = URL(fileURLWithPath: binary)
        tunnel.arguments = ["tunnel", "echo", "--listen", "127.0.0.1:\(port)"]
        tunnel.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        tunnel.standardOutput = FileHandle.nullDevice
        tunnel.standardError = FileHandle.nullDevice
        try tunnel.run()
        defer { kill(tunnel.processIdentifier, SIGKILL) }
        var local: TLSTestConnection?
        for _ in 0..<100 where local == nil {
            local = try? await TLSTestConnection(port: port, caPath: nil)
            if local == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let connection = try #require(local, "the tunnel command did not listen on \(port)")
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
