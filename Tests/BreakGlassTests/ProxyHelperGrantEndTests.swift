import BreakGlassTestSupport
import Foundation
import Testing

/// `breakglass proxy` when a grant it carries ends (issue 19 item 5): it says so on stderr, naming
/// the pathway and the gateway's reason, and keeps serving, so that a new login is used at once and
/// other pathways' grants keep working.
@Suite struct ProxyHelperGrantEndTests {
    @Test func aReleasedGrantIsToldAndTheProxyKeepsServing() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        let environment = try await ProxyCLITests.cliLogin(fixture, user: "alice", pathway: "echo")
        let port = try TestPorts.unused()
        let errorsPath = fixture.gateway.directory.file("proxy-stderr")
        #expect(FileManager.default.createFile(atPath: errorsPath, contents: nil))
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: binary)
        proxy.arguments = ["proxy", "--listen", "127.0.0.1:\(port)"]
        proxy.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        proxy.standardOutput = FileHandle.nullDevice
        guard let errors = FileHandle(forWritingAtPath: errorsPath) else { throw TestSupportError("cannot open \(errorsPath)") }
        proxy.standardError = errors
        try proxy.run()
        defer { kill(proxy.processIdentifier, SIGKILL) }

        let first = try #require(await ProxyCLITests.connect(port: port), "breakglass proxy did not listen on \(port)")
        try await first.send("CONNECT echo:7 HTTP/1.1\r\nHost: echo:7\r\n\r\nbefore\n")
        #expect(await first.wait { $0.text == "HTTP/1.1 200 Connection established\r\n\r\nbefore\n" })

        // The grant is released (another terminal's logout): the gateway refuses its token. logout
        // removes the stored token too; it is put back, as another machine would still hold it.
        let stored = try #require(environment["BREAKGLASS_HOME"]) + "/tokens/echo.json"
        let token = try Data(contentsOf: URL(fileURLWithPath: stored))
        let logout = try await ProcessRunner.run(binary, ["logout", "echo"], environment: environment)
        #expect(logout.status == 0, "\(logout.stderr)")
        try token.write(to: URL(fileURLWithPath: stored))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: stored)
        let second = try await TLSTestConnection(port: port, caPath: nil)
        try await second.send("CONNECT echo:7 HTTP/1.1\r\nHost: echo:7\r\n\r\n")
        #expect(await second.wait { $0.text.hasPrefix("HTTP/1.1 403") && $0.inputClosed }, "\(second.text)")
        #expect(second.text.contains("released"), "\(second.text)")
        let told = await Self.waitForText(errorsPath) { $0.contains("the grant for echo has ended") }
        #expect(told.contains("the grant for echo has ended") && told.contains("released"), "\(told)")
        #expect(told.contains("breakglass login echo"), "\(told)")
        #expect(proxy.isRunning)

        // A new login is used at once, by the same proxy.
        // (The next one-time code: the first was used.)
        let code = try await fixture.gateway.pam.code("alice", steps: 1)
        let login = try await ProcessRunner.run(
            binary, ["login", "echo", "--user", "alice", "--reason", "again", "--password-stdin"],
            stdin: "\(fixture.gateway.pam.password("alice"))\n\(code)\n", environment: environment)
        #expect(login.status == 0, "\(login.stderr)")
        let third = try await TLSTestConnection(port: port, caPath: nil)
        try await third.send("CONNECT echo:7 HTTP/1.1\r\nHost: echo:7\r\n\r\nafter\n")
        #expect(await third.wait { $0.text == "HTTP/1.1 200 Connection established\r\n\r\nafter\n" })
    }

    /// The file's text once `done` holds (tried for 5 s).
    static func waitForText(_ path: String, _ done: (String) -> Bool) async -> String {
        var text = ""
        for _ in 0..<100 {
            text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if done(text) { return text }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return text
    }
}
