import AsyncHTTPClient
import BreakGlassTestSupport
import Foundation
import NIOCore
import NIOSSL
import Testing

@Suite struct TLSTests {
    func client(caPath: String, maximum: TLSVersion) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv1
        tls.maximumTLSVersion = maximum
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caPath))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(5))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    @Test func oldTLSIsRefusedAndModernTLSWorks() async throws {
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let url = gateway.baseURL + "/.well-known/jwks.json"

        let legacy = try client(caPath: gateway.pki.caPath, maximum: .tlsv11)
        await #expect(throws: (any Error).self) {
            _ = try await legacy.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
        }
        try await legacy.shutdown()

        for version in [TLSVersion.tlsv12, .tlsv13] {
            let modern = try client(caPath: gateway.pki.caPath, maximum: version)
            let response = try await modern.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            #expect(response.status == .ok)
            try await modern.shutdown()
        }
    }

    @Test func opensslTLS11HandshakeFails() async throws {
        let openssl = try #require(ProcessRunner.which("openssl"), "openssl is installed by Scripts/test")
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let old = try await ProcessRunner.run(
            openssl,
            [
                "s_client", "-connect", "127.0.0.1:\(gateway.port)", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile",
                gateway.pki.caPath,
            ],
            stdin: "",
            timeout: .seconds(20)
        )
        #expect(old.status != 0)
        let modern = try await ProcessRunner.run(
            openssl,
            ["s_client", "-connect", "127.0.0.1:\(gateway.port)", "-tls1_3", "-CAfile", gateway.pki.caPath, "-verify_return_error"],
            stdin: "",
            timeout: .seconds(20)
        )
        #expect(modern.status == 0, "\(modern.stderr)")
        #expect(modern.stdout.contains("TLSv1.3"))
        #expect(modern.stdout.contains("Verify return code: 0 (ok)"))
    }

    /// Runs `openssl s_client` against the gateway with `options`, sending one request that closes the connection.
    func sClient(_ gateway: TestGateway, _ options: [String]) async throws -> ProcessRunner.Result {
        let openssl = try #require(ProcessRunner.which("openssl"), "openssl is installed by Scripts/test")
        return try await ProcessRunner.run(
            openssl,
            ["s_client", "-ign_eof", "-connect", "127.0.0.1:\(gateway.port)", "-CAfile", gateway.pki.caPath] + options,
            stdin: "GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            timeout: .seconds(20)
        )
    }

    /// The suite a handshake settled on, from `s_client`'s summary line ("New, TLSv1.2, Cipher is X"); nil if none.
    func negotiatedCipher(_ result: ProcessRunner.Result) -> String? {
        result.stdout.split(separator: "\n").first { $0.hasPrefix("New, ") || $0.hasPrefix("Reused, ") }
            .flatMap { $0.components(separatedBy: "Cipher is ").last }.flatMap { $0 == "(NONE)" ? nil : $0 }
    }

    @Test func tls12OffersOnlyForwardSecretAEADSuitesInTheServersOrder() async throws {
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        // CBC suites (LUCKY13) and suites without ECDHE are not offered, whatever the client asks for.
        for cipher in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256", "AES128-GCM-SHA256", "AES128-SHA"] {
            let refused = try await sClient(gateway, ["-tls1_2", "-cipher", cipher])
            #expect(refused.status != 0 && negotiatedCipher(refused) == nil, "\(cipher) was accepted")
        }
        // Both orders of a client's list settle on the same suite: the server's.
        let suites = ["ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"]
        var chosen: Set<String> = []
        for list in [suites, suites.reversed()] {
            let result = try await sClient(gateway, ["-tls1_2", "-cipher", list.joined(separator: ":")])
            #expect(result.status == 0, "\(result.stderr)")
            chosen.insert(negotiatedCipher(result) ?? "none")
        }
        #expect(chosen == ["ECDHE-ECDSA-AES128-GCM-SHA256"])
    }

    @Test(arguments: [["-tls1_2"], ["-tls1_2", "-no_ticket"], ["-tls1_3"]])
    func aClientResumesItsSession(_ options: [String]) async throws {
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let directory = try TestDirectory()
        let session = directory.path + "/session.pem"
        let first = try await sClient(gateway, options + ["-sess_out", session])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("\nNew, "))
        for _ in 0..<2 {
            let again = try await sClient(gateway, options + ["-sess_in", session])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stdout.contains("\nReused, "), "\(options): a full handshake where the client offered its session")
            #expect(again.stdout.contains("HTTP/1.1 200 OK"))
        }
    }

    @Test func pipelinedRequestsOnOneConnectionAreAllAnswered() async throws {
        let openssl = try #require(ProcessRunner.which("openssl"), "openssl is installed by Scripts/test")
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let request = "GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        let last = "GET /v1/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        let result = try await ProcessRunner.run(
            openssl,
            ["s_client", "-quiet", "-ign_eof", "-connect", "127.0.0.1:\(gateway.port)", "-CAfile", gateway.pki.caPath],
            stdin: request + request + last,
            timeout: .seconds(20)
        )
        #expect(result.stdout.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(result.stdout)")
        #expect(result.stdout.contains("HTTP/1.1 404 Not Found"))
    }

    @Test func curlWithTheDevCA() async throws {
        let curl = try #require(ProcessRunner.which("curl"), "curl is installed by Scripts/test")
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let result = try await ProcessRunner.run(
            curl,
            ["-sS", "--fail", "-D", "-", "--cacert", gateway.pki.caPath, gateway.baseURL + "/.well-known/jwks.json"],
            timeout: .seconds(20)
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\"kty\":\"OKP\""))
        #expect(result.stdout.lowercased().contains("strict-transport-security: max-age=31536000"))
        let noCA = try await ProcessRunner.run(curl, ["-sS", gateway.baseURL + "/.well-known/jwks.json"], timeout: .seconds(20))
        #expect(noCA.status != 0)
        let legacy = try await ProcessRunner.run(
            curl,
            ["-sS", "--tlsv1.1", "--tls-max", "1.1", "--cacert", gateway.pki.caPath, gateway.baseURL + "/.well-known/jwks.json"],
            timeout: .seconds(20)
        )
        #expect(legacy.status != 0)
    }
}
