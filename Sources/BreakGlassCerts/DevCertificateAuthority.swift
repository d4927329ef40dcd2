import Crypto
import CryptoExtras
import Foundation
import SwiftASN1
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A development certificate authority that issues TLS server certificates for the gateway.
///
/// Keys are ECDSA P-256: Ed25519 signs tokens and audit checkpoints, but browsers and BoringSSL
/// clients do not accept Ed25519 TLS certificates. For demos, tests and first setups; production
/// gateways should use certificates from the organisation's own CA.
public struct DevCertificateAuthority: Sendable {
    /// The CA's self-signed certificate.
    public let certificate: Certificate
    /// The CA's signing key.
    public let privateKey: P256.Signing.PrivateKey

    /// A CA from an existing certificate and its key.
    public init(certificate: Certificate, privateKey: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// A new self-signed CA valid from a minute ago for `validity`.
    public static func generate(
        commonName: String = "breakglass development CA",
        validity: Duration = .seconds(365 * 86_400),
        now: Date = Date()
    ) throws -> DevCertificateAuthority {
        let key = P256.Signing.PrivateKey()
        let signingKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName("breakglass")
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: signingKey.publicKey)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: signingKey.publicKey,
            notValidBefore: now.addingTimeInterval(-60),
            notValidAfter: now.addingTimeInterval(TimeInterval(validity.components.seconds)),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: signingKey
        )
        return DevCertificateAuthority(certificate: certificate, privateKey: key)
    }

    /// Loads a CA written by `write(certificatePath:keyPath:)`.
    public static func load(certificatePath: String, keyPath: String) throws -> DevCertificateAuthority {
        let certificatePEM = try String(contentsOfFile: certificatePath, encoding: .utf8)
        let keyPEM = try String(contentsOfFile: keyPath, encoding: .utf8)
        return DevCertificateAuthority(
            certificate: try Certificate(pemEncoded: certificatePEM),
            privateKey: try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        )
    }

    /// Issues a TLS server certificate for DNS names and IP addresses, with a new Ed25519 key.
    public func issueServerCertificate(
        dnsNames: [String],
        ipAddresses: [String],
        validity: Duration = .seconds(90 * 86_400),
        now: Date = Date()
    ) throws -> IssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let subjectKey = Certificate.PrivateKey(key)
        let issuerKey = Certificate.PrivateKey(privateKey)
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            guard let bytes = Self.addressBytes(address) else { throw DevCertificateError.invalidAddress(address) }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        guard !names.isEmpty else { throw DevCertificateError.noNames }
        let subject = try DistinguishedName {
            OrganizationName("breakglass")
            CommonName(dnsNames.first ?? ipAddresses.first ?? "breakglass")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: subjectKey.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: issuerKey.publicKey).keyIdentifier)
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: subjectKey.publicKey,
            notValidBefore: now.addingTimeInterval(-60),
            notValidAfter: now.addingTimeInterval(TimeInterval(validity.components.seconds)),
            issuer: self.certificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions,
            issuerPrivateKey: issuerKey
        )
        return IssuedCertificate(certificate: certificate, privateKey: key)
    }

    /// The CA certificate as PEM.
    public func certificatePEM() throws -> String {
        try certificate.serializeAsPEM().pemString
    }

    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// A certificate with its private key.
public struct IssuedCertificate: Sendable {
    /// The issued certificate.
    public let certificate: Certificate
    /// The certificate's private key.
    public let privateKey: P256.Signing.PrivateKey

    /// The certificate as PEM.
    public func certificatePEM() throws -> String {
        try certificate.serializeAsPEM().pemString
    }

    /// The private key as PEM PKCS#8.
    public var privateKeyPEM: String { privateKey.pemRepresentation }
}

/// Why a development certificate could not be made.
public enum DevCertificateError: Error, CustomStringConvertible {
    case invalidAddress(String)
    case noNames

    /// What is wrong, for people.
    public var description: String {
        switch self {
        case .invalidAddress(let text): "\"\(text)\" is not an IP address"
        case .noNames: "a server certificate needs at least one DNS name or IP address"
        }
    }
}
