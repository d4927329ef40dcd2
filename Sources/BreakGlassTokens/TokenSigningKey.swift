import BreakGlassCore
import Crypto
import CryptoExtras
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The gateway's Ed25519 token key with its key id (the RFC 7638 JWK thumbprint).
public struct TokenSigningKey: Sendable {
    /// The Ed25519 private key.
    public let privateKey: Curve25519.Signing.PrivateKey
    /// The `kid` put in token headers and the JWKS.
    public let keyID: String

    /// The key with its key id computed from the public key.
    public init(privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
        self.keyID = Self.thumbprint(of: privateKey.publicKey)
    }

    /// A fresh random key.
    public static func generate() -> TokenSigningKey {
        TokenSigningKey(privateKey: Curve25519.Signing.PrivateKey())
    }

    /// Loads a PEM PKCS#8 Ed25519 private key, refusing files readable by group or others.
    public static func load(path: String) throws(KeyFileError) -> TokenSigningKey {
        let pem = try KeyFile.readPrivate(path: path)
        do {
            return TokenSigningKey(privateKey: try Curve25519.Signing.PrivateKey(pemRepresentation: pem))
        } catch {
            throw KeyFileError(path: path, problem: "is not an Ed25519 private key in PEM PKCS#8 form (\(error))")
        }
    }

    /// The key as PEM PKCS#8.
    public var pemRepresentation: String { privateKey.pemRepresentation }

    /// The public key as base64url (the JWK `x`).
    public var publicKeyBase64URL: String { Base64URL.encode(privateKey.publicKey.rawRepresentation) }

    /// The public JWK of this key.
    public var publicJWK: [String: String] {
        ["kty": "OKP", "crv": "Ed25519", "x": publicKeyBase64URL, "kid": keyID, "alg": "EdDSA", "use": "sig"]
    }

    /// RFC 7638 thumbprint: SHA-256 over the canonical required members, base64url.
    public static func thumbprint(of publicKey: Curve25519.Signing.PublicKey) -> String {
        let x = Base64URL.encode(publicKey.rawRepresentation)
        let canonical = "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"\(x)\"}"
        return Base64URL.encode(Data(SHA256.hash(data: Data(canonical.utf8))))
    }
}
