import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import Testing

/// A reload (or a start under a changed policy) decides live grants again (issue #17 item 1):
/// what the policy no longer allows ends at once, audited and alerted as a revocation by policy;
/// a lower `max_duration` moves expiries earlier. Before the fix every token kept working until it
/// expired.
@Suite struct ReloadReviewTests {
    static func edit(_ fixture: ProxyTests.Fixture, _ change: (String) -> String) throws {
        let path = fixture.gateway.policyPath
        try change(try String(contentsOfFile: path, encoding: .utf8)).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A reload that lands while a login is in PAM applies to that login: the grant is decided under
    /// the policy in force after PAM (and checked again if a reload lands before it is tracked).
    /// Before, it was decided under the policy of the request's start, and the reload's review ran
    /// before the grant existed: alice, removed from web, got a working grant.
    @Test func aReloadDuringALoginAppliesToIt() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        // The stack takes three seconds (a module that sleeps), so that the reload lands during PAM.
        let stack = fixture.gateway.pam.confdir + "/" + fixture.gateway.pam.service
        let original = try String(contentsOfFile: stack, encoding: .utf8)
        try ("auth optional pam_exec.so quiet /bin/sleep 3\n" + original).write(toFile: stack, atomically: true, encoding: .utf8)
        let body = TestGateway.grantBody(
            user: "alice", password: fixture.gateway.pam.password("alice"), otp: try await fixture.gateway.pam.code("alice"),
            pathway: "web")
        let client = fixture.client
        let url = fixture.gateway.baseURL + "/v1/grants"
        let login = Task { try await client.request(.POST, url, body: body) }
        try await Task.sleep(for: .seconds(1))
        try Self.edit(fixture) { policy in
            policy.replacingOccurrences(
                of: "allow: \(ProxyTests.users)\n    default_duration: 10m\n    max_duration: 30m",
                with: "allow: { users: [bob, carol, dave] }\n    default_duration: 10m\n    max_duration: 30m")
        }
        guard case .loaded = await fixture.gateway.service.reloader.reload() else {
            Issue.record("the edited policy did not load")
            return
        }
        let answer = try await login.value
        if answer.status == 201, let token = answer.json["token"] as? String {
            let use = try await fixture.get("/p/web/echo", token: token)
            #expect(use.status == 401, "a grant decided under the old policy works: \(use.status)")
        } else {
            #expect(answer.status == 403, "\(answer.text)")
        }
    }

    @Test func aReloadEndsWhatThePolicyNoLongerAllows() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let alice = try await fixture.login("alice", pathway: "web")
        let bob = try await fixture.login("bob", pathway: "web")
        let carol = try await fixture.login("carol", pathway: "echo")
        let dave = try await fixture.login("dave", pathway: "office")
        let tunnel = try await fixture.tunnel("echo", token: carol.token)
        #expect(tunnel.text.hasPrefix("HTTP/1.1 200"), "\(tunnel.text)")
        let echoPort = try TestPorts.unused()

        try Self.edit(fixture) { policy in
            var policy = policy
            // alice leaves web, web's grants last at most a minute now, echo moves, office goes.
            policy = policy.replacingOccurrences(
                of: "allow: \(ProxyTests.users)\n    default_duration: 10m\n    max_duration: 30m",
                with: "allow: { users: [bob, carol, dave] }\n    default_duration: 1m\n    max_duration: 1m")
            policy = policy.replacingOccurrences(of: "127.0.0.1:\(fixture.echo.port)", with: "127.0.0.1:\(echoPort)")
            if let office = policy.range(of: "  office:") { policy = String(policy[..<office.lowerBound]) }
            return policy
        }
        guard case .loaded = await fixture.gateway.service.reloader.reload() else {
            Issue.record("the edited policy did not load")
            return
        }

        let refusedAlice = try await fixture.get("/p/web/echo", token: alice.token)
        #expect(refusedAlice.status == 401, "\(refusedAlice.text)")
        #expect(refusedAlice.errorMessage?.contains("revoked") == true, "\(refusedAlice.text)")
        #expect(try await fixture.get("/p/web/echo", token: bob.token).status == 200)
        #expect(await tunnel.wait(timeout: .seconds(5)) { $0.inputClosed }, "a tunnel to the old upstream is cut")
        #expect(try await fixture.get("/p/office/echo", token: dave.token).status == 404, "the pathway is gone")

        let revoked = fixture.events(.grantRevoked)
        #expect(Set(revoked.compactMap { $0.fields["session"]?.description }) == Set([alice, carol, dave].map(\.session)))
        #expect(revoked.allSatisfy { $0.fields["reason"] == .string("policy") && $0.fields["by"] == .string("policy") })
        let details = revoked.compactMap { $0.fields["detail"]?.description }.joined(separator: "\n")
        #expect(details.contains("user alice is no longer allowed on pathway web"), "\(details)")
        #expect(details.contains("pathway echo now leads to another upstream"), "\(details)")
        #expect(details.contains("pathway office is no longer in the policy"), "\(details)")

        let registry = fixture.gateway.service.proxy.registry
        let bobsExpiry = try #require(registry.liveSessionsWithConnections().first { $0.info.session == bob.session }?.info.expiresAt)
        #expect(bobsExpiry.timeIntervalSinceNow <= 61, "bob's grant now ends within max_duration of its issue")
        await tunnel.close()
    }

    /// A policy edited while the gateway was down applies to the grants rebuilt at start.
    @Test func aStartUnderAChangedPolicyEndsWhatItNoLongerAllows() async throws {
        let fixture = try await ProxyTests.fixture(durableAudit: true)
        let alice = try await fixture.login("alice", pathway: "web")
        let bob = try await fixture.login("bob", pathway: "web")
        let restarted = try await fixture.gateway.restarted {
            try Self.edit(fixture) {
                $0.replacingOccurrences(
                    of: "allow: \(ProxyTests.users)\n    default_duration: 10m", with: "allow: { users: [bob] }\n    default_duration: 10m")
            }
        }
        let client = try HTTPSTestClient(caPath: restarted.pki.caPath)
        func get(_ token: String) async throws -> HTTPSTestClient.Response {
            try await client.request(.GET, restarted.baseURL + "/p/web/echo", headers: [("Authorization", "Bearer \(token)")])
        }
        let refused = try await get(alice.token)
        #expect(refused.status == 401, "\(refused.text)")
        #expect(refused.errorMessage?.contains("revoked") == true, "\(refused.text)")
        #expect(try await get(bob.token).status == 200)

        await client.shutdown()
        await fixture.client.shutdown()
        await fixture.upstream.stop()
        await fixture.echo.stop()
        await restarted.stop()
    }
}
