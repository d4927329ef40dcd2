import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassClient
import BreakGlassCore
import BreakGlassGateway
import BreakGlassHealth
import BreakGlassTestSupport
import Foundation
import Testing

/// Self-tests, health, metrics, alerts and drills against real gateways, upstreams and PAM.
@Suite struct HealthTests {
    static let users = "{ users: [alice, bob, carol, dave] }"

    /// A gateway with probes over an HTTP upstream (`web`, `other`) and a TCP echo with a banner (`echo`).
    struct Fixture {
        let upstream: TestUpstream
        let other: TestUpstream
        let echo: TestTCPEchoServer
        let gateway: TestGateway
        let client: HTTPSTestClient

        var monitor: HealthMonitor { gateway.service.monitor }

        func stop() async {
            await client.shutdown()
            await gateway.stop()
            await upstream.stop()
            await other.stop()
            await echo.stop()
        }

        /// Waits for the gateway's first automatic round, so that later rounds are the test's own. A
        /// busy machine may stretch that round up to the probes' budget (15 s a pathway by default).
        func settled() async throws {
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while monitor.report().lastRound == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        }

        func login(_ user: String, pathway: String, steps: Int = 0, tag: String? = nil) async throws -> HTTPSTestClient.Response {
            var body: [String: String] = [
                "user": user, "password": gateway.pam.password(user), "otp": try await gateway.pam.code(user, steps: steps),
                "pathway": pathway, "reason": "health test",
            ]
            body["tag"] = tag
            let data = try JSONSerialization.data(withJSONObject: body)
            return try await client.request(.POST, gateway.baseURL + "/v1/grants", body: String(decoding: data, as: UTF8.self))
        }
    }

    /// An exec alert sink for tests: a script that appends each alert to a file, and what it received.
    struct AlertFile {
        let folder: TestDirectory
        let script: String
        let received: String

        init() throws {
            folder = try TestDirectory("breakglass-alerts")
            received = folder.file("received.jsonl")
            script = try folder.write("alert.sh", "#!/bin/sh\ncat >> \(received)\necho >> \(received)\n", mode: 0o755)
        }

        /// The alerts received so far, one JSON object each.
        var alerts: [[String: Any]] {
            let text = (try? String(contentsOfFile: received, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
    }

    static func fixture(
        probes: String = "interval: 1h\nfail_after: 2\nrecover_after: 2\ntimeout: 15s", alerts: String = "", durableAudit: Bool = true,
        certificateValidity: Duration = .seconds(30 * 86_400), otherProbe: String? = nil, gatewayKeys: String = ""
    ) async throws -> Fixture {
        let upstream = try await TestUpstream()
        let other = try await TestUpstream()
        let echo = try await TestTCPEchoServer(banner: "HELLO echo\r\n")
        let policy = """
            pathways:
              web:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: \(users)
                probe: { path: /probe, status: 200, body_contains: "\\"method\\":\\"GET\\"" }
              other:
                kind: http
                upstream: http://127.0.0.1:\(other.port)
                allow: \(users)
            \(otherProbe.map { "    probe: \($0)" } ?? "")
              echo:
                kind: tcp
                upstream: 127.0.0.1:\(echo.port)
                allow: \(users)
                probe: { banner: HELLO }
              quiet:
                kind: tcp
                upstream: 127.0.0.1:\(echo.port)
                allow: \(users)
                probe: false

            """ + alerts
        let gateway = try await TestGateway(
            policyBody: policy, durableAudit: durableAudit, certificateValidity: certificateValidity, probes: probes,
            gatewayKeys: gatewayKeys)
        return Fixture(
            upstream: upstream, other: other, echo: echo, gateway: gateway, client: try HTTPSTestClient(caPath: gateway.pki.caPath))
    }

    @Test func probesPassEndToEndAndTheirGrantsCanDoNothingElse() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        let round = await fixture.monitor.round()
        #expect(round.passed, "\(round.pathways.compactMap(\.failure))")
        #expect(round.login != nil)
        #expect(Set(round.pathways.map(\.pathway)) == ["web", "other", "echo"])
        let web = try #require(round.pathways.first { $0.pathway == "web" })
        #expect(web.steps.map(\.name) == ["connect", "request", "release", "audit"])
        let echo = try #require(round.pathways.first { $0.pathway == "echo" })
        #expect(echo.steps.map(\.name) == ["connect", "tunnel", "banner", "release", "audit"])
        let health = fixture.monitor.report()
        #expect(health.state == .healthy)
        #expect(health.pathways["web"]?.state == .healthy)
        #expect(health.pathways["quiet"]?.state == .unknown)
        #expect(health.checks.map(\.name) == ["certificate", "token_key", "audit", "policy", "clock"])

        // Over the API, as a load balancer and a dashboard see it.
        let answer = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/v1/health")
        #expect(answer.status == 200)
        #expect(answer.json["state"] as? String == "healthy")
        let ready = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/v1/health?ready")
        #expect(ready.status == 200)

        // The probe's own grants: tagged in the audit log, and useless for anything but the probe.
        let log = try #require(fixture.gateway.service.auditLog)
        let records = try AuditLogReader.read(directory: log.directory).entries.compactMap(\.record)
        let probeGrants = records.filter { $0.event.kind == .grantIssued && $0.event.fields["tag"] == .string("probe") }
        #expect(probeGrants.count >= 3)
        let credentials = try ProbeCredentials.load(path: fixture.gateway.directory.file("probe.credentials"))
        let body = try JSONSerialization.data(withJSONObject: [
            "user": TestGateway.probeUser, "password": credentials.password,
            "otp": credentials.code(step: credentials.step(at: Date()) + 8), "pathways": ["web", "echo"],
        ])
        let grants = try await fixture.client.request(
            .POST, fixture.gateway.baseURL + "/v1/probe/grants", body: String(decoding: body, as: UTF8.self))
        #expect(grants.status == 201, "\(grants.text)")
        let issued = try #require(grants.json["grants"] as? [[String: Any]])
        let webToken = try #require(issued.first { $0["pathway"] as? String == "web" }?["token"] as? String)
        let allowed = try await fixture.client.request(
            .GET, fixture.gateway.baseURL + "/p/web/probe", headers: [("Authorization", "Bearer \(webToken)")])
        #expect(allowed.status == 200)
        let refused = try await fixture.client.request(
            .GET, fixture.gateway.baseURL + "/p/web/admin", headers: [("Authorization", "Bearer \(webToken)")])
        #expect(refused.status == 403)
        #expect(refused.text.contains("only the probe"))

        // The probe identity cannot get an ordinary grant, and nobody else can get probe grants.
        let ordinary = try await fixture.client.request(
            .POST, fixture.gateway.baseURL + "/v1/grants",
            body: TestGateway.grantBody(
                user: TestGateway.probeUser, password: credentials.password,
                otp: credentials.code(step: credentials.step(at: Date()) + 9), pathway: "web"))
        #expect(ordinary.status == 403)
        let alice = try JSONSerialization.data(withJSONObject: [
            "user": "alice", "password": fixture.gateway.pam.password("alice"), "otp": try await fixture.gateway.pam.code("alice"),
            "pathways": ["web"],
        ])
        let stolen = try await fixture.client.request(
            .POST, fixture.gateway.baseURL + "/v1/probe/grants", body: String(decoding: alice, as: UTF8.self))
        #expect(stolen.status == 403)
    }

    @Test func aStoppedUpstreamFailsItsPathwayAloneAndRecoveryFollows() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        #expect(await fixture.monitor.round().passed)
        let port = fixture.other.port
        await fixture.other.stop()

        let first = await fixture.monitor.round()
        let failure = try #require(first.pathways.first { $0.pathway == "other" }?.failure)
        #expect(failure.step == "request")
        #expect(failure.message.contains("502"))
        #expect(fixture.monitor.report().pathways["other"]?.state == .degraded)
        _ = await fixture.monitor.round()
        let failing = fixture.monitor.report()
        #expect(failing.pathways["other"]?.state == .failing)
        #expect(failing.pathways["other"]?.lastError?.step == "request")
        #expect(failing.pathways["web"]?.state == .healthy)
        #expect(failing.pathways["echo"]?.state == .healthy)
        #expect(failing.state == .degraded)

        let restarted = try await TestUpstream(port: port)
        defer { Task { await restarted.stop() } }
        _ = await fixture.monitor.round()
        #expect(fixture.monitor.report().pathways["other"]?.state == .failing, "one pass is not yet a recovery")
        _ = await fixture.monitor.round()
        let recovered = fixture.monitor.report()
        #expect(recovered.pathways["other"]?.state == .healthy)
        #expect(recovered.state == .healthy)

        let log = try #require(fixture.gateway.service.auditLog)
        _ = try await log.checkpoint()
        let changes = try AuditLogReader.read(directory: log.directory).entries.compactMap(\.record)
            .filter { $0.event.kind == .pathwayState }.map { "\($0.event.fields["to"]?.description ?? "")" }
        #expect(changes.suffix(3) == ["degraded", "failing", "healthy"])
    }

    @Test func aCertificateNearExpiryDegradesTheGateway() async throws {
        let fixture = try await Self.fixture(certificateValidity: .seconds(5 * 86_400))
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        let report = fixture.monitor.report()
        let certificate = try #require(report.checks.first { $0.name == "certificate" })
        #expect(certificate.state == .degraded)
        #expect(certificate.detail.contains("renew it soon"))
        #expect(report.state == .degraded)
        #expect(report.ready)
    }

    @Test func certificateWarningsAndAuditFailuresAreAlerted() async throws {
        let sink = try AlertFile()
        defer { sink.folder.remove() }
        let script = sink.script
        let fixture = try await Self.fixture(
            alerts: "alerts:\n  - exec: [\(script)]\n", durableAudit: false, certificateValidity: .seconds(5 * 86_400))
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        fixture.gateway.audit.setFailing(true)
        let refused = try await fixture.login("alice", pathway: "web")
        #expect(refused.status == 503)
        #expect(refused.json["error"].flatMap { ($0 as? [String: Any])?["code"] as? String } == "audit_unavailable")

        var kinds: [String: [String: Any]] = [:]
        for _ in 0..<100 {
            for alert in sink.alerts { if let kind = alert["alert"] as? String { kinds[kind] = alert } }
            if kinds["certificate.expiring"] != nil, kinds["audit.failed"] != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let certificate = try #require(kinds["certificate.expiring"])
        #expect(certificate["state"] as? String == "degraded")
        #expect((certificate["detail"] as? String)?.contains("renew it soon") == true)
        let audit = try #require(kinds["audit.failed"])
        #expect((audit["detail"] as? String)?.contains("withheld") == true)
    }

    @Test func aHangingPathwayTimesOutAloneAndARejectedReloadDegrades() async throws {
        // Generous for the pathways that answer (the suite shares two cores), short of the hanging one.
        // A round's budget covers every pathway's login, request and release (durable audit) with the
        // whole suite running beside it; the hanging pathway answers only after 10 s.
        let fixture = try await Self.fixture(probes: "interval: 1h\ntimeout: 7s", otherProbe: "{ path: /slow/10000 }")
        defer { Task { await fixture.stop() } }
        // The first round, whoever starts it: the gateway's automatic one joins this one, or this
        // joins it (a round takes the whole budget here, so waiting for it first would add one).
        let round = await fixture.monitor.round()
        let other = try #require(round.pathways.first { $0.pathway == "other" })
        #expect(other.failure?.step == "request")
        #expect(other.failure?.message.contains("no answer within") == true, "\(String(describing: other.failure))")
        let others = round.pathways.filter { $0.pathway != "other" }
        #expect(others.count == 2 && others.allSatisfy { $0.passed }, "\(others.map(\.failure))")

        // A policy file that does not load leaves the last known good one in force: degraded.
        try "gateway: {}\n".write(toFile: fixture.gateway.policyPath, atomically: true, encoding: .utf8)
        _ = await fixture.gateway.service.reloader.reload()
        _ = await fixture.monitor.round()
        let policy = try #require(fixture.monitor.report().checks.first { $0.name == "policy" })
        #expect(policy.state == .degraded)
        #expect(policy.detail.contains("last known good"))
    }

    @Test func anExecSinkReceivesEveryGrantAndRevocation() async throws {
        let sink = try AlertFile()
        defer { sink.folder.remove() }
        let script = sink.script
        let fixture = try await Self.fixture(alerts: "alerts:\n  - exec: [\(script)]\n")
        defer { Task { await fixture.stop() } }
        var sessions: [String] = []
        for (user, pathway) in [("alice", "web"), ("bob", "echo"), ("carol", "web")] {
            let response = try await fixture.login(user, pathway: pathway, tag: user == "bob" ? "drill" : nil)
            #expect(response.status == 201, "\(response.text)")
            sessions.append(response.json["session"] as? String ?? "")
        }
        let socket = fixture.gateway.directory.file("audit/admin.sock")
        let revoke = try await ProcessRunner.run(
            try ProcessRunner.breakglassExecutable(), ["revoke", "--socket", socket, "--user", "alice", "--reason", "test"])
        #expect(revoke.status == 0, "\(revoke.stderr)")

        var alerts: [[String: Any]] = []
        for _ in 0..<100 {
            alerts = sink.alerts
            if alerts.filter({ $0["alert"] as? String != "pathway.state" }).count >= 4 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let grants = alerts.filter { $0["alert"] as? String == "grant.issued" }
        #expect(Set(grants.compactMap { $0["session"] as? String }) == Set(sessions))
        let bob = try #require(grants.first { $0["user"] as? String == "bob" })
        #expect(bob["pathway"] as? String == "echo")
        #expect(bob["reason"] as? String == "health test")
        #expect(bob["tag"] as? String == "drill")
        #expect(bob["expires_at"] is String && bob["gateway"] as? String == "test-gateway")
        #expect(!grants.contains { $0["user"] as? String == TestGateway.probeUser }, "probe grants raise no alert")
        let revoked = alerts.filter { $0["alert"] as? String == "grant.revoked" }
        #expect(revoked.map { $0["session"] as? String } == [sessions[0]])
    }

    @Test func aFailingWebhookDoesNotHoldUpGrantsAndIsAudited() async throws {
        // The webhook answers only after 10 s; each attempt gives up after 1 s.
        let slow = try await TestUpstream()
        defer { Task { await slow.stop() } }
        let alerts = """
            alerts:
              - webhook: http://127.0.0.1:\(slow.port)/slow/10000
                name: pager
                timeout: 1s
                attempts: 2

            """
        let fixture = try await Self.fixture(probes: "interval: 1h", alerts: alerts, durableAudit: false)
        defer { Task { await fixture.stop() } }
        let grant = try await fixture.login("alice", pathway: "web")
        #expect(grant.status == 201)
        // Answered while the first delivery attempt is still waiting for the webhook.
        #expect(fixture.gateway.audit.events(.alertFailed).filter { $0.fields["alert"] == .string("grant.issued") }.isEmpty)
        var failed: [AuditEvent] = []
        for _ in 0..<100 {
            failed = fixture.gateway.audit.events(.alertFailed).filter { $0.fields["alert"] == .string("grant.issued") }
            if failed.count >= 2, !fixture.gateway.audit.events(.alertDropped).isEmpty { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(failed.map(\.fields["attempt"]) == [.integer(1), .integer(2)])
        #expect(failed.allSatisfy { $0.fields["sink"] == .string("pager") })
        let dropped = fixture.gateway.audit.events(.alertDropped).filter { $0.fields["alert"] == .string("grant.issued") }
        #expect(dropped.count == 1)
        let metrics = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/metrics")
        #expect(metrics.text.contains("breakglass_alerts_total{sink=\"pager\",outcome=\"failed\"}"))
    }

    @Test func metricsPassPromtool() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        let grant = try await fixture.login("alice", pathway: "web")
        let token = try #require(grant.json["token"] as? String)
        _ = try await fixture.client.request(
            .GET, fixture.gateway.baseURL + "/p/web/hello", headers: [("Authorization", "Bearer \(token)")])
        _ = try await fixture.client.request(
            .POST, fixture.gateway.baseURL + "/v1/grants",
            body: TestGateway.grantBody(user: "bob", password: "wrong", otp: "000000", pathway: "web"))
        let metrics = try await fixture.client.request(.GET, fixture.gateway.baseURL + "/metrics")
        #expect(metrics.status == 200)
        let text = metrics.text
        for name in [
            "breakglass_probe_success{pathway=\"web\"} 1", "breakglass_probe_duration_seconds_bucket", "breakglass_grants_issued_total",
            "breakglass_grants_denied_total{pathway=\"web\",code=\"authentication_failed\"} 1", "breakglass_active_sessions",
            "breakglass_proxy_requests_total{pathway=\"web\",class=\"2xx\"}", "breakglass_proxy_bytes_total",
            "breakglass_audit_appends_total", "breakglass_audit_batch_records_bucket", "breakglass_audit_fsync_seconds_bucket",
            "breakglass_certificate_expiry_seconds", "breakglass_pathway_state{pathway=\"web\"} 0",
        ] {
            #expect(text.contains(name), "missing \(name)")
        }
        let promtool = try #require(ProcessRunner.which("promtool"), "promtool is not installed (Scripts/test installs it)")
        let check = try await ProcessRunner.run(promtool, ["check", "metrics"], stdin: text)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func drillsReportOnAGoodAndABrokenPathway() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        let environment = ["BREAKGLASS_GATEWAY": fixture.gateway.baseURL, "BREAKGLASS_CA": fixture.gateway.pki.caPath]
        let auditKey = try String(contentsOfFile: fixture.gateway.directory.file("audit/audit-key.pub"), encoding: .utf8)

        let good = try await ProcessRunner.run(
            binary, ["drill", "--pathway", "web", "--user", "alice", "--password-stdin", "--audit-key", auditKey],
            stdin: "\(fixture.gateway.pam.password("alice"))\n\(try await fixture.gateway.pam.code("alice"))\n", environment: environment)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stdout.contains("Drill on pathway web: PASSED"))
        for step in ["login", "connect", "request", "logout", "audit"] { #expect(good.stdout.contains("  \(step)")) }
        #expect(good.stdout.contains("time to access:"))

        let tunnel = try await ProcessRunner.run(
            binary, ["drill", "--pathway", "echo", "--user", "bob", "--password-stdin", "--banner", "HELLO", "--json"],
            stdin: "\(fixture.gateway.pam.password("bob"))\n\(try await fixture.gateway.pam.code("bob"))\n", environment: environment)
        #expect(tunnel.status == 0, "\(tunnel.stdout)\(tunnel.stderr)")
        let report = try JSONDecoder().decode(Drill.Report.self, from: Data(tunnel.stdout.utf8))
        #expect(report.steps.map(\.name) == ["login", "connect", "tunnel", "logout", "audit"])
        #expect(report.timeToAccessMilliseconds != nil)

        await fixture.other.stop()
        let broken = try await ProcessRunner.run(
            binary, ["drill", "--pathway", "other", "--user", "carol", "--password-stdin"],
            stdin: "\(fixture.gateway.pam.password("carol"))\n\(try await fixture.gateway.pam.code("carol"))\n", environment: environment)
        #expect(broken.status == 1, "\(broken.stdout)\(broken.stderr)")
        #expect(broken.stdout.contains("Drill on pathway other: FAILED"))
        #expect(broken.stdout.contains("request  FAIL"))
        #expect(broken.stdout.contains("502"))
        #expect(broken.stdout.contains("logout   ok"), "the grant is still released")
        #expect(broken.stdout.contains("time to access: no access"))
    }

    @Test func selftestAndHealthCommands() async throws {
        let fixture = try await Self.fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.settled()
        let binary = try ProcessRunner.breakglassExecutable()
        let socket = fixture.gateway.directory.file("audit/admin.sock")
        let selftest = try await ProcessRunner.run(binary, ["selftest", "--socket", socket])
        #expect(selftest.status == 0, "\(selftest.stdout)\(selftest.stderr)")
        #expect(selftest.stdout.contains("one PAM login"))
        #expect(selftest.stdout.contains("web") && selftest.stdout.contains("pass"))

        await fixture.other.stop()
        let only = try await ProcessRunner.run(binary, ["selftest", "--socket", socket, "--pathway", "other", "--json"])
        #expect(only.status == 1)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let round = try decoder.decode(ProbeRoundReport.self, from: Data(only.stdout.utf8))
        #expect(round.pathways.map(\.pathway) == ["other"])
        #expect(round.pathways.first?.failure?.step == "request")

        let health = try await ProcessRunner.run(
            binary, ["health", "--gateway", fixture.gateway.baseURL, "--ca", fixture.gateway.pki.caPath])
        #expect(health.status == 1, "degraded: \(health.stdout)\(health.stderr)")
        #expect(health.stdout.contains("DEGRADED"))
        #expect(health.stdout.contains("last error at request"))
        let missing = try await ProcessRunner.run(binary, ["selftest", "--socket", fixture.gateway.directory.file("nothing.sock")])
        #expect(missing.status == 2)
    }
}
