import BreakGlassTestSupport
import Foundation
import Testing

/// Where health and metrics are served, and what the network sees of them (issue #17 item 4):
/// states, steps and codes, never the words that name upstream addresses or files; the admin socket
/// has those. Before the fix `/v1/health` on the TLS listener showed every error in full.
@Suite struct StatusEndpointTests {
    static func curl(_ arguments: [String]) async throws -> (status: Int, body: String) {
        let curl = try #require(ProcessRunner.which("curl"))
        let result = try await ProcessRunner.run(curl, ["-s", "--max-time", "5", "-w", "\n%{http_code}"] + arguments)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func theNetworkSeesStepsAndCodesAndTheAdminSocketTheDetails() async throws {
        let fixture = try await HealthTests.fixture(certificateValidity: .seconds(5 * 86_400))
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        let port = fixture.other.port
        await fixture.other.stop()
        _ = await fixture.monitor.round()
        let full = fixture.monitor.report()
        let failure = try #require(full.pathways["other"]?.lastError)
        #expect(failure.message.contains("127.0.0.1:\(port)"), "\(failure)")

        let shown = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/v1/health")
        #expect(!shown.text.contains("127.0.0.1:\(port)"), "\(shown.text)")
        #expect(!shown.text.contains(fixture.gateway.directory.path), "\(shown.text)")
        #expect(!shown.text.contains("renew it soon"), "\(shown.text)")
        let other = try #require((shown.json["pathways"] as? [String: Any])?["other"] as? [String: Any])
        let error = try #require(other["last_error"] as? [String: Any])
        #expect(error["step"] as? String == failure.step)
        #expect(error["code"] as? String == failure.code)

        let admin = try await Self.curl([
            "--unix-socket", fixture.gateway.directory.file("audit/admin.sock"), "http://admin/v1/admin/health",
        ])
        #expect(admin.status == 200)
        #expect(admin.body.contains("127.0.0.1:\(port)"), "\(admin.body)")
        #expect(admin.body.contains("renew it soon"), "\(admin.body)")
    }

    @Test func onTheAdminSocketOnly() async throws {
        let fixture = try await HealthTests.fixture(gatewayKeys: "status: admin")
        defer { Task { await fixture.stop() } }
        for path in ["/v1/health", "/v1/health?ready", "/metrics"] {
            let answer = try await fixture.client.request(.GET, fixture.gateway.baseURL + path)
            #expect(answer.status == 404, "\(path): \(answer.text)")
            #expect(answer.text.contains("admin socket"), "\(answer.text)")
        }
        let socket = fixture.gateway.directory.file("audit/admin.sock")
        #expect(try await Self.curl(["--unix-socket", socket, "http://admin/v1/admin/health"]).status == 200)
        let metrics = try await Self.curl(["--unix-socket", socket, "http://admin/v1/admin/metrics"])
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("breakglass_"), "\(metrics.body.prefix(300))")
    }

    @Test func atAnAddressOfTheirOwn() async throws {
        // A port found free can be taken before the gateway binds it (another test's connection gets
        // it as its own port under a full run's load): then the gateway serves without its status
        // address, as it should, and the test tries another port.
        var attempt = 0
        var port = 0
        var fixture: HealthTests.Fixture
        var taken: Bool
        repeat {
            attempt += 1
            port = try TestPorts.unused()
            fixture = try await HealthTests.fixture(gatewayKeys: "status: 127.0.0.1:\(port)")
            taken = fixture.gateway.log.contains("status address unavailable")
            if taken, attempt < 5 { await fixture.stop() }
        } while taken && attempt < 5
        defer { Task { [fixture] in await fixture.stop() } }
        let health = try await Self.curl(["http://127.0.0.1:\(port)/v1/health"])
        #expect(health.status == 200 || health.status == 503, "\(health.body)")
        #expect(health.body.contains("\"pathways\""), "\(health.body)")
        #expect(try await Self.curl(["http://127.0.0.1:\(port)/v1/health?ready"]).status == 200)
        #expect(try await Self.curl(["http://127.0.0.1:\(port)/metrics"]).body.contains("breakglass_"))
        #expect(try await Self.curl(["http://127.0.0.1:\(port)/v1/grants"]).status == 404)
        let listener = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/v1/health")
        #expect(listener.status == 404)
        #expect(listener.text.contains("127.0.0.1:\(port)"), "\(listener.text)")
    }
}
