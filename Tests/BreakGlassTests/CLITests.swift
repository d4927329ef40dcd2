import BreakGlassTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

@Suite struct CLITests {
    @Test func loginTokenAndStatusEndToEnd() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let home = gateway.directory.file("home")
        let environment = ["BREAKGLASS_HOME": home, "BREAKGLASS_GATEWAY": gateway.baseURL, "BREAKGLASS_CA": gateway.pki.caPath]
        let code = try await gateway.pam.code("carol")
        let login = try await ProcessRunner.run(
            binary,
            [
                "login", "status-api", "--user", "carol", "--reason", "db down", "--ticket", "INC-9", "--duration", "20m",
                "--password-stdin",
            ],
            stdin: "\(gateway.pam.password("carol"))\n\(code)\n",
            environment: environment
        )
        #expect(login.status == 0, "\(login.stderr)")
        #expect(login.stdout.contains("Granted: pathway status-api for carol"))
        // Once, in the local zone, with the time left (issue 19 item 9).
        #expect(login.stdout.contains(", in 19m") || login.stdout.contains(", in 20m"), "\(login.stdout)")
        #expect(login.stdout.contains("curl ") && !login.stdout.contains("breakglass tunnel"), "\(login.stdout)")

        let stored = home + "/tokens/status-api.json"
        let mode = try FileManager.default.attributesOfItem(atPath: stored)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let token = try await ProcessRunner.run(binary, ["token", "status-api"], environment: environment)
        #expect(token.status == 0)
        let bearer = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(bearer.split(separator: ".").count == 3)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        let current = try await client.request(
            .GET, gateway.baseURL + "/v1/grants/current", headers: [("Authorization", "Bearer \(bearer)")])
        await client.shutdown()
        #expect(current.json["user"] as? String == "carol")
        #expect(current.json["ticket"] as? String == "INC-9")

        let status = try await ProcessRunner.run(binary, ["status"], environment: environment)
        #expect(status.status == 0)
        #expect(status.stdout.contains("status-api"))
        #expect(status.stdout.contains("valid ("))

        let missing = try await ProcessRunner.run(binary, ["token", "grafana"], environment: environment)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no grant stored for grafana"))

        let refused = try await ProcessRunner.run(
            binary,
            ["login", "grafana", "--user", "carol", "--reason", "x", "--password-stdin"],
            stdin: "wrong\n123456\n",
            environment: environment
        )
        #expect(refused.status == 2)
        #expect(
            refused.stderr.contains(
                "login refused: authentication failed: the user, password or one-time code is wrong [authentication_failed]"))
        // Every refusal the gateway answers exits 2, an unknown pathway too (issue 19 item 2: it exited 1).
        let unknown = try await ProcessRunner.run(
            binary,
            ["login", "grafna", "--user", "carol", "--reason", "x", "--password-stdin"],
            stdin: "wrong\n123456\n",
            environment: environment
        )
        #expect(unknown.status == 2, "\(unknown.stderr)")
        #expect(unknown.stderr.contains("did you mean \"grafana\"?"), "\(unknown.stderr)")
        // No gateway there: exit 1, saying what happened, not "login refused" (issue 19 item 7).
        var nowhere = environment
        nowhere["BREAKGLASS_GATEWAY"] = "https://127.0.0.1:1"
        let unreachable = try await ProcessRunner.run(
            binary, ["login", "grafana", "--user", "carol", "--reason", "x", "--password-stdin"], stdin: "wrong\n123456\n",
            environment: nowhere)
        #expect(unreachable.status == 1, "\(unreachable.stderr)")
        #expect(unreachable.stderr.contains("cannot reach https://127.0.0.1:1: connection refused"), "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("login refused"), "\(unreachable.stderr)")
        // The password never appears in anything the CLI prints.
        #expect(!(login.stdout + login.stderr + status.stdout).contains(gateway.pam.password("carol")))
    }

    @Test func policyCheckReportsEveryErrorWithPlace() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let good = try await ProcessRunner.run(binary, ["policy", "check", gateway.policyPath])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("valid. gateway test-gateway"))
        let original = try String(contentsOfFile: gateway.policyPath, encoding: .utf8)
        let broken = original.replacingOccurrences(of: "max_duration: 30m", with: "max_duration: 2x")
            .replacingOccurrences(of: "kind: tcp", with: "kind: udp")
        let path = try gateway.directory.write("broken.yaml", broken)
        let bad = try await ProcessRunner.run(binary, ["policy", "check", path])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("policy rejected, 2 errors"))
        let line = try #require(broken.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("2x") }) + 1
        #expect(bad.stderr.contains("broken.yaml:\(line):19: pathways.grafana.max_duration: \"2x\" is not a duration"))
        #expect(bad.stderr.contains("pathways.office-only.kind: \"udp\" is not a pathway kind (http or tcp)"))
    }

    @Test func serveReloadsOnSIGHUPAndKeepsLastKnownGood() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let directory = try TestDirectory("serve")
        defer { directory.remove() }
        let certs = try await ProcessRunner.run(binary, ["certs", "dev", "--out", directory.file("tls")])
        #expect(certs.status == 0, "\(certs.stderr)")
        let keys = try await ProcessRunner.run(binary, ["keys", "generate", "--out", directory.file("token-key.pem")])
        #expect(keys.status == 0, "\(keys.stderr)")
        let auditKey = try await ProcessRunner.run(binary, ["keys", "generate", "--out", directory.file("audit-key.pem")])
        #expect(auditKey.status == 0, "\(auditKey.stderr)")
        let pam = try await PAMTestStack(in: directory, users: ["alice": "alice-pw", "bob": "bob-pw"])
        let port = try await Self.freePort()
        let policy = """
            gateway:
              id: sighup-gateway
              listen: 127.0.0.1:\(port)
              tls: { certificate: tls/server.pem, private_key: tls/server-key.pem }
              token_key: token-key.pem
              pam: { service: breakglass, confdir: pam/pam.d, failure_delay: 50ms }
              audit: { directory: audit, key: audit-key.pem }
            pathways:
              grafana:
                kind: http
                upstream: http://127.0.0.1:9002
                allow: { users: [alice, bob] }

            """
        let policyPath = try directory.write("policy.yaml", policy)
        let logPath = directory.file("serve.log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let server = Process()
        server.executableURL = URL(fileURLWithPath: binary)
        server.arguments = ["serve", "--config", policyPath, "--threads", "1"]
        server.standardError = log
        server.standardOutput = log
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        try await Self.waitForLog(logPath, "gateway listening")

        let environment = [
            "BREAKGLASS_HOME": directory.file("home"), "BREAKGLASS_GATEWAY": "https://127.0.0.1:\(port)",
            "BREAKGLASS_CA": directory.file("tls/ca.pem"),
        ]
        func login(_ user: String, _ pathway: String) async throws -> ProcessRunner.Result {
            let code = try await pam.code(user)
            return try await ProcessRunner.run(
                binary,
                ["login", pathway, "--user", user, "--reason", "sighup test", "--password-stdin"],
                stdin: "\(pam.password(user))\n\(code)\n",
                environment: environment
            )
        }

        try policy.replacingOccurrences(of: "kind: http", with: "kind: htp").write(toFile: policyPath, atomically: true, encoding: .utf8)
        kill(server.processIdentifier, SIGHUP)
        try await Self.waitForLog(logPath, "POLICY RELOAD REJECTED")
        let stale = try await login("alice", "grafana")
        #expect(stale.status == 0, "the last known good policy must still grant: \(stale.stderr)")

        let extended =
            policy + """
                  new-door:
                    kind: tcp
                    upstream: 127.0.0.1:5432
                    allow: { users: [bob] }

                """
        try extended.write(toFile: policyPath, atomically: true, encoding: .utf8)
        kill(server.processIdentifier, SIGHUP)
        try await Self.waitForLog(logPath, "policy reloaded")
        let fresh = try await login("bob", "new-door")
        #expect(fresh.status == 0, "\(fresh.stderr)")

        kill(server.processIdentifier, SIGTERM)
        for _ in 0..<100 where server.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!server.isRunning)
        #expect(server.terminationStatus == 0)
        try await Self.waitForLog(logPath, "gateway stopped listening")
        let verify = try await ProcessRunner.run(binary, ["audit", "verify", directory.file("audit")])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let sessions = try await ProcessRunner.run(binary, ["audit", "sessions", directory.file("audit"), "--json"])
        #expect(sessions.stdout.contains("\"pathway\":\"new-door\""), "\(sessions.stdout)")
    }

    @Test func serveRefusesToStartWithoutAValidPolicy() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let directory = try TestDirectory("serve-bad")
        defer { directory.remove() }
        let path = try directory.write("policy.yaml", "gateway:\n  id: x\npathways: {}\n")
        let result = try await ProcessRunner.run(binary, ["serve", "--config", path], timeout: .seconds(20))
        #expect(result.status == 1)
        #expect(result.stderr.contains("refusing to start"))
        #expect(result.stderr.contains("gateway.listen: is required"))
        #expect(result.stderr.contains("pathways: must name at least one pathway"))
    }

    static func waitForLog(_ path: String, _ text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let contents = try? String(contentsOfFile: path, encoding: .utf8), contents.contains(text) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        let contents = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        throw TestSupportError("\"\(text)\" did not appear in the log within \(timeout):\n\(contents)")
    }

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }
}
