import BreakGlassTestSupport
import Foundation
import Testing

/// Revocations that cannot be forgotten (issue #17 item 2): the audit log is their source of truth,
/// so a lost or damaged sessions file does not bring a revoked grant back, and `revoke` reports
/// success only when the revocation is on the record.
@Suite struct RevocationTests {
    enum Damage: String, CaseIterable, Sendable {
        case deleted, corrupted, emptied
    }

    @Test(arguments: Damage.allCases)
    func aRevocationOutlivesTheSessionsFile(_ damage: Damage) async throws {
        let fixture = try await ProxyTests.fixture(durableAudit: true)
        let alice = try await fixture.login("alice", pathway: "web")
        let bob = try await fixture.login("bob", pathway: "web")
        let socket = fixture.gateway.directory.file("audit/admin.sock")
        let revoke = try await ProcessRunner.run(
            try ProcessRunner.breakglassExecutable(), ["revoke", "--socket", socket, "--session", alice.session, "--reason", "test"])
        #expect(revoke.status == 0, "\(revoke.stderr)")

        let file = fixture.gateway.directory.file("audit/ended-sessions.json")
        let restarted = try await fixture.gateway.restarted {
            switch damage {
            case .deleted: try FileManager.default.removeItem(atPath: file)
            case .corrupted: try Data("{\"sessions\": [tru".utf8).write(to: URL(fileURLWithPath: file))
            case .emptied: try Data().write(to: URL(fileURLWithPath: file))
            }
        }
        let client = try HTTPSTestClient(caPath: restarted.pki.caPath)
        func get(_ token: String) async throws -> HTTPSTestClient.Response {
            try await client.request(.GET, restarted.baseURL + "/p/web/echo", headers: [("Authorization", "Bearer \(token)")])
        }
        let refused = try await get(alice.token)
        #expect(refused.status == 401, "\(damage): \(refused.text)")
        #expect(refused.errorMessage?.contains("revoked") == true, "\(damage): \(refused.text)")
        #expect(try await get(bob.token).status == 200, "the live grant stays live")

        await client.shutdown()
        await fixture.client.shutdown()
        await fixture.upstream.stop()
        await fixture.echo.stop()
        await restarted.stop()
    }

    /// A revocation the log cannot record cuts the connections but is not reported as done: the
    /// operator sees why, and `revoke` exits non-zero.
    @Test func revokeFailsWhenTheRevocationIsNotOnTheRecord() async throws {
        let fixture = try await ProxyTests.fixture(durableAudit: true)
        defer { Task { await fixture.stop() } }
        let alice = try await fixture.login("alice", pathway: "web")
        let log = try #require(fixture.gateway.service.auditLog)
        // The log stops accepting records, as after a write error.
        await log.close()
        let revoke = try await ProcessRunner.run(
            try ProcessRunner.breakglassExecutable(),
            ["revoke", "--socket", fixture.gateway.directory.file("audit/admin.sock"), "--session", alice.session])
        #expect(revoke.status != 0, "\(revoke.stdout)")
        #expect(revoke.stderr.contains("could not record"), "\(revoke.stderr)")
        // Refused all the same: the end holds in this process.
        #expect(try await fixture.get("/p/web/echo", token: alice.token).status == 401)
    }
}
