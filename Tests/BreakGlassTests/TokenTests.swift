import BreakGlassCore
import BreakGlassTokens
import Crypto
import Foundation
import JWTKit
import Testing

@Suite struct TokenTests {
    static func grant(issuedAt: Date = Date(), lifetime: TimeInterval = 900, pathway: String = "status-api") -> Grant {
        Grant(
            session: Grant.newSessionID(),
            user: "alice",
            pathway: pathway,
            reason: "database down",
            ticket: "INC-7",
            issuedAt: issuedAt,
            expiresAt: issuedAt.addingTimeInterval(lifetime),
            amr: ["pwd", "otp", "mfa"],
            source: "127.0.0.1"
        )
    }

    static func parts(_ token: String) -> [String] {
        token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    static func json(_ object: [String: Any]) throws -> String {
        Base64URL.encode(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    @Test func issuedTokenCarriesClaimsAndVerifies() async throws {
        let key = TokenSigningKey.generate()
        let authority = await TokenAuthority(issuer: "test-gateway", key: key)
        let grant = Self.grant()
        let token = try await authority.issue(grant)
        let claims = try await authority.verify(token, audience: "status-api", now: Date())
        #expect(claims.sub.value == "alice")
        #expect(claims.aud.value == ["status-api"])
        #expect(claims.jti.value == grant.session)
        #expect(claims.iss.value == "test-gateway")
        #expect(claims.reason == "database down")
        #expect(claims.ticket == "INC-7")
        #expect(claims.amr == ["pwd", "otp", "mfa"])
        let header = try #require(Base64URL.decode(Self.parts(token)[0]))
        let fields = try #require(try JSONSerialization.jsonObject(with: header) as? [String: Any])
        #expect(fields["alg"] as? String == "EdDSA")
        #expect(fields["kid"] as? String == key.keyID)
        #expect(grant.session.count == 32)
    }

    @Test func jwksVerifiesTokenIndependently() async throws {
        let authority = await TokenAuthority(issuer: "test-gateway", key: .generate())
        let token = try await authority.issue(Self.grant())
        let document = try #require(try JSONSerialization.jsonObject(with: authority.jwksJSON) as? [String: Any])
        let jwk = try #require((document["keys"] as? [[String: String]])?.first)
        #expect(jwk["kty"] == "OKP")
        #expect(jwk["crv"] == "Ed25519")
        #expect(jwk["alg"] == "EdDSA")
        let parts = Self.parts(token)
        let x = try #require(jwk["x"])
        let raw = try #require(Base64URL.decode(x))
        let publicKey = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        let signature = try #require(Base64URL.decode(parts[2]))
        #expect(publicKey.isValidSignature(signature, for: Data("\(parts[0]).\(parts[1])".utf8)))
        #expect(TokenSigningKey.thumbprint(of: publicKey) == jwk["kid"])
        // A stock JWT library loaded from the JWKS alone accepts it too.
        let verifier = try await JWTKeyCollection().add(jwksJSON: String(decoding: authority.jwksJSON, as: UTF8.self))
        let claims = try await verifier.verify(token, as: GrantClaims.self)
        #expect(claims.sub.value == "alice")
    }

    @Test func tamperedPayloadIsRefused() async throws {
        let authority = await TokenAuthority(issuer: "test-gateway", key: .generate())
        let token = try await authority.issue(Self.grant())
        var parts = Self.parts(token)
        let payloadData = try #require(Base64URL.decode(parts[1]))
        var payload = try #require(try JSONSerialization.jsonObject(with: payloadData) as? [String: Any])
        payload["aud"] = "grafana"
        parts[1] = try Self.json(payload)
        await #expect(throws: BreakGlassError.self) {
            try await authority.verify(parts.joined(separator: "."), audience: "grafana", now: Date())
        }
    }

    @Test func expiredTokenIsRefusedBeyondSkew() async throws {
        let authority = await TokenAuthority(issuer: "test-gateway", key: .generate())
        let issued = Date().addingTimeInterval(-3600)
        let token = try await authority.issue(Self.grant(issuedAt: issued, lifetime: 600))
        do {
            _ = try await authority.verify(token, audience: "status-api", now: Date())
            Issue.record("an expired token was accepted")
        } catch {
            #expect(error.code == .invalidToken)
            #expect(error.message.hasPrefix("token expired at"))
        }
        // Within the 30 s skew it still holds; past it, it does not.
        let edge = issued.addingTimeInterval(600)
        _ = try await authority.verify(token, audience: "status-api", now: edge.addingTimeInterval(29))
        await #expect(throws: BreakGlassError.self) {
            try await authority.verify(token, audience: "status-api", now: edge.addingTimeInterval(31))
        }
    }

    @Test func wrongAudienceIsRefused() async throws {
        let authority = await TokenAuthority(issuer: "test-gateway", key: .generate())
        let token = try await authority.issue(Self.grant(pathway: "status-api"))
        do {
            _ = try await authority.verify(token, audience: "grafana", now: Date())
            Issue.record("a token for another pathway was accepted")
        } catch {
            #expect(error.message == "token is for pathway status-api, not grafana")
        }
    }

    @Test func algNoneIsRefused() async throws {
        let key = TokenSigningKey.generate()
        let authority = await TokenAuthority(issuer: "test-gateway", key: key)
        let parts = Self.parts(try await authority.issue(Self.grant()))
        let header = try Self.json(["alg": "none", "typ": "JWT", "kid": key.keyID])
        for forged in ["\(header).\(parts[1]).", "\(header).\(parts[1]).\(parts[2])"] {
            do {
                _ = try await authority.verify(forged, audience: "status-api", now: Date())
                Issue.record("alg none was accepted")
            } catch {
                #expect(error.message == "token algorithm is not EdDSA")
            }
        }
    }

    @Test func hs256WithThePublicKeyIsRefused() async throws {
        let key = TokenSigningKey.generate()
        let authority = await TokenAuthority(issuer: "test-gateway", key: key)
        let parts = Self.parts(try await authority.issue(Self.grant()))
        let header = try Self.json(["alg": "HS256", "typ": "JWT", "kid": key.keyID])
        let secrets: [Data] = [
            key.privateKey.publicKey.rawRepresentation,
            Data(key.privateKey.publicKey.pemRepresentation.utf8),
            Data(key.publicKeyBase64URL.utf8),
        ]
        for secret in secrets {
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(parts[1])".utf8), using: SymmetricKey(data: secret))
            let forged = "\(header).\(parts[1]).\(Base64URL.encode(Data(mac)))"
            await #expect(throws: BreakGlassError.self) {
                try await authority.verify(forged, audience: "status-api", now: Date())
            }
        }
    }

    @Test func otherKeyAndOtherIssuerAreRefused() async throws {
        let key = TokenSigningKey.generate()
        let authority = await TokenAuthority(issuer: "test-gateway", key: key)
        let stranger = await TokenAuthority(issuer: "test-gateway", key: .generate())
        let foreign = try await stranger.issue(Self.grant())
        do {
            _ = try await authority.verify(foreign, audience: nil, now: Date())
            Issue.record("a token from another key was accepted")
        } catch {
            #expect(error.message == "token was not signed by this gateway's key")
        }
        // Same key id in the header, signed by another key.
        var parts = Self.parts(foreign)
        parts[0] = try Self.json(["alg": "EdDSA", "typ": "JWT", "kid": key.keyID])
        await #expect(throws: BreakGlassError.self) {
            try await authority.verify(parts.joined(separator: "."), audience: nil, now: Date())
        }
        let otherIssuer = await TokenAuthority(issuer: "other-gateway", key: key)
        let token = try await otherIssuer.issue(Self.grant())
        do {
            _ = try await authority.verify(token, audience: nil, now: Date())
            Issue.record("a token from another issuer was accepted")
        } catch {
            #expect(error.message == "token was issued by other-gateway, not test-gateway")
        }
    }

    @Test func keyFilesArePrivate() throws {
        let folder = FileManager.default.temporaryDirectory.path + "/keys-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let key = TokenSigningKey.generate()
        let path = folder + "/token.pem"
        try KeyFile.writePrivate(key.pemRepresentation, to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try TokenSigningKey.load(path: path).keyID == key.keyID)
        #expect(throws: KeyFileError.self) { try KeyFile.writePrivate(key.pemRepresentation, to: path) }
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        #expect(throws: KeyFileError.self) { try TokenSigningKey.load(path: path) }
    }

    /// A key that belongs to another user (the packaged gateway's keys belong to `breakglass`) is
    /// refused, and the refusal says whose it is and how to run the command as that user.
    @Test func aKeyOfAnotherUserIsRefusedWithItsOwnersName() throws {
        try #require(geteuid() == 0, "the tests run as root (Scripts/test), which can give a file away")
        let folder = FileManager.default.temporaryDirectory.path + "/keys-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/token.pem"
        try KeyFile.writePrivate(TokenSigningKey.generate().pemRepresentation, to: path)
        let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
        #expect(chown(path, nobody, gid_t(0)) == 0)
        do {
            _ = try KeyFile.readPrivate(path: path)
            Issue.record("a key of another user was read")
        } catch {
            #expect(error.description.contains("is owned by nobody (uid \(nobody))"), "\(error.description)")
            #expect(error.description.contains("run this as nobody (sudo -u nobody ...)"), "\(error.description)")
        }
    }
}
