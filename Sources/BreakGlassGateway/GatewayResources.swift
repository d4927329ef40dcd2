import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassConfig
import BreakGlassCore
import BreakGlassTokens
import NIOCore
import NIOSSL

/// What the gateway builds from a policy's files: the TLS context and the token authority.
public struct GatewayResources: Sendable {
    /// The listener's TLS server context, from the policy's certificate chain and key.
    public let tlsContext: NIOSSLContext
    /// Signs and verifies grant tokens with the policy's token key.
    public let tokens: TokenAuthority

    /// Loads the certificate, TLS key and token key that the policy names; problems name the policy key.
    public static func load(_ loaded: LoadedPolicy) async throws(PolicyValidationError) -> GatewayResources {
        let gateway = loaded.policy.gateway
        var issues: [PolicyIssue] = []
        func issue(_ keyPath: String, _ message: String) {
            issues.append(PolicyIssue(file: loaded.file, line: 0, column: 0, keyPath: keyPath, message: message))
        }
        var context: NIOSSLContext?
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(gateway.tlsCertificate).map { NIOSSLCertificateSource.certificate($0) }
            if chain.isEmpty { issue("gateway.tls.certificate", "\(gateway.tlsCertificate) holds no certificate") }
            do {
                let pem = try KeyFile.readPrivate(path: gateway.tlsPrivateKey)
                let key = try NIOSSLPrivateKey(bytes: Array(pem.utf8), format: .pem)
                var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
                configuration.minimumTLSVersion = .tlsv12
                configuration.maximumTLSVersion = .tlsv13
                // TLS 1.2: ECDHE with AES-128-GCM only (RFC 9325 §4.2.1's recommended suite and its ECDSA twin), one suite
                // for each key type. BoringSSL lets the client's order win among TLS 1.2 suites, and swift-nio-ssl
                // does not expose SSL_OP_CIPHER_SERVER_PREFERENCE, so one suite per key type is what keeps the
                // choice the server's. TLS 1.3 suites are all AEAD with ECDHE; BoringSSL lets the client choose among them.
                // Resumption: BoringSSL's session cache and tickets, whose keys it rotates itself.
                configuration.cipherSuiteValues = [.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
                // A cut connection (expiry, release, revocation) waits at most this long for the peer's close_notify.
                configuration.shutdownTimeout = .milliseconds(500)
                configuration.applicationProtocols = ["http/1.1"]
                if !chain.isEmpty { context = try NIOSSLContext(configuration: configuration) }
            } catch let error as KeyFileError {
                issue("gateway.tls.private_key", error.description)
            } catch {
                issue("gateway.tls.private_key", "\(gateway.tlsPrivateKey) does not load or does not match the certificate: \(error)")
            }
        } catch {
            issue("gateway.tls.certificate", "\(gateway.tlsCertificate) is not a PEM certificate chain: \(error)")
        }
        var key: TokenSigningKey?
        do {
            key = try TokenSigningKey.load(path: gateway.tokenKey)
        } catch {
            issue("gateway.token_key", error.description)
        }
        if let audit = gateway.audit {
            do {
                _ = try AuditLog.loadSigner(settings: audit, origin: gateway.id)
            } catch {
                issue("gateway.audit.key", error.message)
            }
        }
        guard issues.isEmpty, let context, let key else { throw PolicyValidationError(issues: issues) }
        return GatewayResources(tlsContext: context, tokens: await TokenAuthority(issuer: gateway.id, key: key))
    }
}
