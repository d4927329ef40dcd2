import BreakGlassCerts
import BreakGlassCore
import BreakGlassTokens
import Foundation

/// Certificates and keys made fresh for one test: a dev CA, a server certificate for 127.0.0.1 and
/// localhost, and an Ed25519 token key. Nothing is committed; everything lives in the test's folder.
public struct TestPKI: Sendable {
    public let caPath: String
    public let certificatePath: String
    public let privateKeyPath: String
    public let tokenKeyPath: String
    public let tokenKey: TokenSigningKey
    public let auditKeyPath: String

    public init(in directory: TestDirectory, validity: Duration = .seconds(30 * 86_400)) throws {
        let authority = try DevCertificateAuthority.generate()
        let server = try authority.issueServerCertificate(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"], validity: validity)
        caPath = try directory.write("tls/ca.pem", try authority.certificatePEM())
        certificatePath = try directory.write("tls/server.pem", try server.certificatePEM())
        privateKeyPath = directory.file("tls/server-key.pem")
        try KeyFile.writePrivate(server.privateKeyPEM, to: privateKeyPath)
        tokenKey = TokenSigningKey.generate()
        tokenKeyPath = directory.file("token-key.pem")
        try KeyFile.writePrivate(tokenKey.pemRepresentation, to: tokenKeyPath)
        auditKeyPath = directory.file("audit-key.pem")
        try KeyFile.writePrivate(TokenSigningKey.generate().pemRepresentation, to: auditKeyPath)
    }
}
