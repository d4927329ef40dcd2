import BreakGlassCore
import Crypto
import Foundation
import JWTKit

/// Issues and verifies grant tokens: EdDSA (Ed25519) JWTs pinned to one key and one issuer; each token
/// names one pathway as its audience, which `verify` checks when given one.
public struct TokenAuthority: Sendable {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    public static let maximumSkew: TimeInterval = 30
    /// Longest token accepted.
    public static let maximumTokenLength = 8192

    /// The `iss` claim of every token: the gateway id.
    public let issuer: String
    /// The key that signs and verifies tokens.
    public let key: TokenSigningKey
    private let keys: JWTKeyCollection

    /// An authority that signs with `key` as `issuer`.
    public init(issuer: String, key: TokenSigningKey) async {
        self.issuer = issuer
        self.key = key
        self.keys = await JWTKeyCollection().add(
            eddsa: EdDSA.PrivateKey(backing: key.privateKey),
            kid: JWKIdentifier(string: key.keyID)
        )
    }

    /// Signs a token for the grant.
    public func issue(_ grant: Grant) async throws -> String {
        let claims = GrantClaims(
            iss: IssuerClaim(value: issuer),
            sub: SubjectClaim(value: grant.user),
            aud: AudienceClaim(value: grant.pathway),
            iat: IssuedAtClaim(value: grant.issuedAt),
            nbf: NotBeforeClaim(value: grant.issuedAt),
            exp: ExpirationClaim(value: grant.expiresAt),
            jti: IDClaim(value: grant.session),
            reason: grant.reason,
            ticket: grant.ticket,
            amr: grant.amr,
            tag: grant.tag?.rawValue
        )
        var header = JWTHeader()
        header.alg = "EdDSA"
        header.typ = "JWT"
        return try await keys.sign(claims, kid: JWKIdentifier(string: key.keyID), header: header)
    }

    /// Verifies signature, algorithm, key id, issuer, expiry and (when given) the audience.
    public func verify(_ token: String, audience: String?, now: Date) async throws(BreakGlassError) -> GrantClaims {
        guard token.utf8.count <= Self.maximumTokenLength else { throw Self.invalid("token is too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        // One spelling per token: the signature's unused bits, padding or the standard alphabet
        // would give other strings for the same signed content.
        guard parts.count == 3, parts.allSatisfy(Base64URL.isCanonical), let headerData = Base64URL.decode(parts[0]),
            let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any]
        else { throw Self.invalid("token is not a signed JWT in compact form") }
        guard header["alg"] as? String == "EdDSA" else { throw Self.invalid("token algorithm is not EdDSA") }
        guard header["kid"] as? String == key.keyID else { throw Self.invalid("token was not signed by this gateway's key") }
        guard header["crit"] == nil else { throw Self.invalid("token has critical header extensions") }
        guard Self.isIssuedHeader(header, bytes: headerData) else {
            throw Self.invalid("token header is not the one this gateway issues (alg, kid and typ, each once)")
        }
        let claims: GrantClaims
        do {
            claims = try await keys.verify(token, as: GrantClaims.self)
        } catch {
            throw Self.invalid("token signature or claims are invalid")
        }
        guard claims.iss.value == issuer else { throw Self.invalid("token was issued by \(claims.iss.value), not \(issuer)") }
        if let audience {
            guard claims.aud.value == [audience] else {
                throw BreakGlassError(.invalidToken, "token is for pathway \(claims.aud.value.joined(separator: ",")), not \(audience)")
            }
        }
        let skew = Self.maximumSkew
        guard now.timeIntervalSince(claims.exp.value) < skew else {
            throw Self.invalid("token expired at \(claims.exp.value.formatted(.iso8601))")
        }
        guard claims.nbf.value.timeIntervalSince(now) <= skew, claims.iat.value.timeIntervalSince(now) <= skew else {
            throw Self.invalid("token is not valid yet (check the clocks)")
        }
        return claims
    }

    /// The JWKS document (`/.well-known/jwks.json`) with this gateway's public key.
    public var jwksJSON: Data {
        let document = ["keys": [key.publicJWK]]
        return (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{\"keys\":[]}".utf8)
    }

    /// Hex SHA-256 of a token, as audit records carry it.
    public static func tokenHash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The grant a verified token describes.
    public static func grant(from claims: GrantClaims) -> Grant {
        Grant(
            session: claims.jti.value,
            user: claims.sub.value,
            pathway: claims.aud.value.first ?? "",
            reason: claims.reason,
            ticket: claims.ticket,
            issuedAt: claims.iat.value,
            expiresAt: claims.exp.value,
            amr: claims.amr,
            source: nil,
            tag: claims.tag.flatMap(Grant.Tag.init(rawValue:))
        )
    }

    /// Whether a header holds only what `issue` writes: `alg` and `kid` (checked by the caller) and
    /// optionally `typ: JWT`, each once. Every member adds at least two quotes and these three
    /// values are plain strings (four quotes a member), so any other or repeated member (which
    /// another JSON parser might read instead) shows in the count.
    static func isIssuedHeader(_ header: [String: Any], bytes: Data) -> Bool {
        guard Set(header.keys).isSubset(of: ["alg", "kid", "typ"]) else { return false }
        if let typ = header["typ"] { guard typ as? String == "JWT" else { return false } }
        return bytes.reduce(0) { $0 + ($1 == UInt8(ascii: "\"") ? 1 : 0) } == 4 * header.count
    }

    private static func invalid(_ message: String) -> BreakGlassError {
        BreakGlassError(.invalidToken, message)
    }
}
