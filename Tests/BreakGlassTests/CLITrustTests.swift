import BreakGlassTestSupport
import Foundation
import Testing

/// A gateway whose certificate the client's CA did not sign: every command that talks to it says
/// which CA it trusted and how to give another, without the TLS library's error dump (issue 19 item 7).
@Suite struct CLITrustTests {
    /// What a trust failure must not show: BoringSSL's reason codes and NIOSSL's error names.
    static let rawWords = ["CERTIFICATE_VERIFY_FAILED", "BoringSSL", "handshakeFailed", "OPENSSL_internal", "sslError"]

    static func expectTrustFailure(_ text: String, naming ca: String?, _ command: String) {
        if let ca {
            #expect(text.contains("the CA in \(ca)"), "\(command): \(text)")
        } else {
            #expect(text.contains("the system trust store"), "\(command): \(text)")
        }
        #expect(text.contains("--ca FILE") && text.contains("BREAKGLASS_CA"), "\(command): \(text)")
        for word in rawWords { #expect(!text.contains(word), "\(command): \(text)") }
    }

    @Test func everyGatewayCommandNamesTheCAItTrustedAndTheRemedy() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        // A CA of its own, which did not sign the gateway's certificate.
        let otherFolder = try TestDirectory("breakglass-other-ca")
        defer { otherFolder.remove() }
        let otherCA = try TestPKI(in: otherFolder).caPath

        // A grant stored with the right CA, for the commands that use a stored grant.
        var environment = try await ProxyCLITests.cliLogin(fixture, user: "alice", pathway: "echo")
        environment["BREAKGLASS_CA"] = otherCA

        let health = try await ProcessRunner.run(binary, ["health"], environment: environment)
        #expect(health.status == 3)
        Self.expectTrustFailure(health.stderr, naming: otherCA, "health")

        let code = try await fixture.gateway.pam.code("bob")
        let login = try await ProcessRunner.run(
            binary, ["login", "echo", "--user", "bob", "--reason", "trust test", "--password-stdin"],
            stdin: "\(fixture.gateway.pam.password("bob"))\n\(code)\n", environment: environment)
        // Not a refusal: the gateway never answered.
        #expect(login.status == 1, "\(login.stderr)")
        #expect(!login.stderr.contains("login refused"), "\(login.stderr)")
        Self.expectTrustFailure(login.stderr, naming: otherCA, "login")

        // The flag names the file as well as the environment does.
        let flagged = try await ProcessRunner.run(
            binary, ["health", "--ca", otherCA], environment: environment.merging(["BREAKGLASS_CA": ""]) { $1 })
        Self.expectTrustFailure(flagged.stderr, naming: otherCA, "health --ca")

        let status = try await ProcessRunner.run(binary, ["status"], environment: environment)
        Self.expectTrustFailure(status.stdout, naming: otherCA, "status")

        let connect = try await ProcessRunner.run(binary, ["connect", "echo"], stdin: "x\n", environment: environment)
        #expect(connect.status != 0)
        Self.expectTrustFailure(connect.stderr, naming: otherCA, "connect")

        let logout = try await ProcessRunner.run(binary, ["logout", "echo"], environment: environment)
        #expect(logout.status != 0)
        Self.expectTrustFailure(logout.stderr, naming: otherCA, "logout")

        // No CA given: the system trust store was used, and the message says so.
        var system = environment
        system["BREAKGLASS_CA"] = ""
        let untrusted = try await ProcessRunner.run(binary, ["health"], environment: system)
        #expect(untrusted.status == 3)
        Self.expectTrustFailure(untrusted.stderr, naming: nil, "health without --ca")

        // The grant is still there and works with the right CA.
        environment["BREAKGLASS_CA"] = fixture.gateway.pki.caPath
        let through = try await ProcessRunner.run(binary, ["connect", "echo"], stdin: "still here\n", environment: environment)
        #expect(through.status == 0, "\(through.stderr)")
        #expect(through.stdout == "still here\n")
    }
}
