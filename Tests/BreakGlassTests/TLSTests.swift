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
            ["-sS", "--fail", "--cacert", gateway.pki.caPath, gateway.baseURL + "/.well-known/jwks.json"],
            timeout: .seconds(20)
        )
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\"kty\":\"OKP\""))
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
