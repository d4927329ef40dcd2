import BreakGlassCore
import BreakGlassGateway
import BreakGlassTestSupport
import BreakGlassTokens
import Crypto
import Foundation
import Testing

/// The tokens attack suite (issue #16): every token that is not one the gateway issued, as it
/// issued it, for this pathway, still live, is refused with `401 invalid_token` (or, for one too
/// large for the header block, `431`), and the gateway still serves a valid grant afterwards.
@Suite struct TokenAttackTests {
    /// A token's parts, built by hand.
    struct Forgery {
        var header: [String: Any]
        var claims: [String: Any]

        var signingInput: String {
            (try? TokenTests.json(header)).map { header in header + "." + ((try? TokenTests.json(claims)) ?? "") } ?? ""
        }

        func signed(with key: Curve25519.Signing.PrivateKey) throws -> String {
            let input = signingInput
            return input + "." + Base64URL.encode(try key.signature(for: Data(input.utf8)))
        }

        func hmac(keyedWith secret: some DataProtocol) -> String {
            let input = signingInput
            let code = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret)))
            return input + "." + Base64URL.encode(Data(code))
        }
    }

    struct Context {
        var fixture: ProxyTests.Fixture
        var key: TokenSigningKey
        var alice: ProxyTests.Fixture.Login

        /// A header and claims as the gateway issues them for alice's real session on `web`.
        func genuine(now: Date = Date()) -> Forgery {
            let seconds = Int(now.timeIntervalSince1970)
            return Forgery(
                header: ["alg": "EdDSA", "typ": "JWT", "kid": key.keyID],
                claims: [
                    "iss": "test-gateway", "sub": "alice", "aud": "web", "iat": seconds - 5, "nbf": seconds - 5, "exp": seconds + 600,
                    "jti": alice.session, "reason": "test outage", "amr": ["pwd", "otp", "mfa"],
                ])
        }

        func with(header: [String: Any?] = [:], claims: [String: Any?] = [:]) -> Forgery {
            var forgery = genuine()
            for (name, value) in header { forgery.header[name] = value }
            for (name, value) in claims { forgery.claims[name] = value }
            return forgery
        }

        /// Asserts that `token` on `pathway` is refused with 401 invalid_token.
        func expectRefused(_ token: String, _ name: String, pathway: String = "web") async throws {
            let response = try await fixture.get("/p/\(pathway)/echo", token: token)
            #expect(response.status == 401, "\(name): \(response.status) \(response.text)")
            #expect(response.errorCode == "invalid_token", "\(name): \(response.text)")
        }

        /// The gateway still serves alice's grant.
        func expectStillServed() async throws {
            let response = try await fixture.get("/p/web/echo", token: alice.token)
            #expect(response.status == 200, "\(response.text)")
        }
    }

    static func context() async throws -> Context {
        let fixture = try await ProxyTests.fixture()
        let key = try TokenSigningKey.load(path: fixture.gateway.directory.file("token-key.pem"))
        let alice = try await fixture.login("alice", pathway: "web")
        let context = Context(fixture: fixture, key: key, alice: alice)
        // The hand-built genuine token is accepted: each case below changes one thing only.
        let genuine = try context.genuine().signed(with: key.privateKey)
        #expect(try await fixture.get("/p/web/echo", token: genuine).status == 200)
        return context
    }

    @Test func algorithmAndKeyConfusionAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let key = context.key
        let none = context.with(header: ["alg": "none"])
        try await context.expectRefused(none.signingInput + ".", "alg none, no signature")
        try await context.expectRefused(try none.signed(with: key.privateKey), "alg none, signed")
        try await context.expectRefused(context.with(header: ["alg": "NONE"]).signingInput + ".", "alg NONE")
        let hs256 = context.with(header: ["alg": "HS256"])
        let publicKey = key.privateKey.publicKey
        try await context.expectRefused(hs256.hmac(keyedWith: publicKey.rawRepresentation), "HS256 keyed with the raw public key")
        try await context.expectRefused(hs256.hmac(keyedWith: Data(publicKey.pemRepresentation.utf8)), "HS256 keyed with the PEM")
        try await context.expectRefused(hs256.hmac(keyedWith: Data(key.publicKeyBase64URL.utf8)), "HS256 keyed with the JWK x")
        let other = Curve25519.Signing.PrivateKey()
        try await context.expectRefused(try context.genuine().signed(with: other), "another Ed25519 key under the same kid")
        // The other key offered in the header itself.
        let embedded = context.with(header: [
            "jwk": ["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(other.publicKey.rawRepresentation)]
        ])
        try await context.expectRefused(try embedded.signed(with: other), "another key embedded as jwk")
        try await context.expectRefused(
            try context.with(header: ["kid": TokenSigningKey.generate().keyID]).signed(with: key.privateKey), "an unknown kid")
        try await context.expectRefused(try context.with(header: ["kid": nil]).signed(with: key.privateKey), "no kid")
        try await context.expectRefused(try context.with(header: ["kid": ""]).signed(with: key.privateKey), "an empty kid")
        try await context.expectRefused(
            try context.with(header: ["crit": ["exp"]]).signed(with: key.privateKey), "a critical header extension")
        try await context.expectStillServed()
    }

    @Test func claimsOutOfBoundsAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let key = context.key.privateKey
        let now = Int(Date().timeIntervalSince1970)
        try await context.expectRefused(try context.with(claims: ["exp": now - 120]).signed(with: key), "expired")
        try await context.expectRefused(try context.with(claims: ["exp": nil]).signed(with: key), "no exp")
        try await context.expectRefused(try context.with(claims: ["nbf": now + 300]).signed(with: key), "nbf in the future")
        try await context.expectRefused(try context.with(claims: ["iat": now + 300]).signed(with: key), "iat in the future")
        try await context.expectRefused(try context.with(claims: ["iss": "other-gateway"]).signed(with: key), "wrong iss")
        try await context.expectRefused(try context.with(claims: ["iss": nil]).signed(with: key), "no iss")
        try await context.expectRefused(try context.with(claims: ["aud": "somewhere"]).signed(with: key), "wrong aud")
        try await context.expectRefused(try context.with(claims: ["aud": ["web", "based"]]).signed(with: key), "two audiences")
        try await context.expectRefused(context.alice.token, "another pathway's audience", pathway: "based")
        try await context.expectRefused(
            try context.with(claims: ["aud": "based"]).signed(with: key), "alice's session for another pathway", pathway: "based")
        try await context.expectRefused(try context.with(claims: ["sub": "carol"]).signed(with: key), "alice's session as carol")
        try await context.expectRefused(
            try context.with(claims: ["jti": Grant.newSessionID()]).signed(with: key), "a jti never issued")
        try await context.expectRefused(try context.with(claims: ["jti": nil]).signed(with: key), "no jti")
        try await context.expectStillServed()
    }

    @Test func releasedAndRevokedSessionsAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let fixture = context.fixture
        let bob = try await fixture.login("bob", pathway: "web")
        let released = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(bob.session)", headers: [("Authorization", "Bearer \(bob.token)")])
        #expect(released.status == 200, "\(released.text)")
        try await context.expectRefused(bob.token, "a released session")
        let carol = try await fixture.login("carol", pathway: "web")
        await fixture.gateway.service.proxy.registry.end([carol.session], as: .revoked, by: "operator test")
        try await context.expectRefused(carol.token, "a revoked session")
        try await context.expectStillServed()
    }

    @Test func damagedAndMisplacedTokensAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let fixture = context.fixture
        var parts = TokenTests.parts(context.alice.token)
        var signature = try #require(Base64URL.decode(parts[2]))
        signature[10] ^= 0x01
        parts[2] = Base64URL.encode(signature)
        try await context.expectRefused(parts.joined(separator: "."), "one flipped signature byte")
        try await context.expectRefused(context.alice.token + ".", "a fourth part")
        try await context.expectRefused(
            context.alice.token + String(repeating: "A", count: TokenAuthority.maximumTokenLength), "longer than the token limit")

        // Larger than the header block: 431 from the parser, or 401; never served.
        let oversized = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
        try await oversized.send(
            "GET /p/web/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(context.alice.token)\(String(repeating: "A", count: 64 << 10))\r\n\r\n"
        )
        _ = await oversized.wait { $0.text.contains("\r\n\r\n") || $0.isClosed }
        #expect(oversized.text.hasPrefix("HTTP/1.1 431") || oversized.text.hasPrefix("HTTP/1.1 401"), "\(oversized.text.prefix(200))")
        await oversized.close()

        // A token in the query string authorizes nothing.
        for name in ["access_token", "token", "bearer", "jwt"] {
            let response = try await fixture.get("/p/web/echo?\(name)=\(context.alice.token)", token: nil)
            #expect(response.status == 401, "?\(name)=: \(response.status)")
            #expect(response.errorCode == "invalid_token")
        }
        // Nor does it as another header, or with another scheme.
        let basic = try await fixture.get("/p/web/echo", token: nil, headers: [("Authorization", "Basic \(context.alice.token)")])
        #expect(basic.status == 401)
        let cookie = try await fixture.get("/p/web/echo", token: nil, headers: [("Cookie", "token=\(context.alice.token)")])
        #expect(cookie.status == 401)
        try await context.expectStillServed()
    }

    /// Only the encoding the gateway issues is accepted: canonical unpadded base64url in every part,
    /// and a header of `alg`, `kid` and `typ` alone, each once. Other spellings of a valid token, or
    /// headers that other parsers read differently, are refused even when signed with the real key.
    @Test func otherSpellingsOfASignedTokenAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let key = context.key
        let parts = TokenTests.parts(context.alice.token)
        // The signature's last character carries 2 unused bits: three other characters decode alike.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let signature = parts[2]
        let last = try #require(signature.last.flatMap { alphabet.firstIndex(of: $0) })
        for delta in 1..<4 {
            let spelled = String(signature.dropLast()) + String(alphabet[(last & ~3) | ((last + delta) & 3)])
            try await context.expectRefused([parts[0], parts[1], spelled].joined(separator: "."), "non-canonical signature \(delta)")
        }
        try await context.expectRefused(context.alice.token + "==", "padded signature")
        let payload = try #require(Base64URL.decode(parts[1]))
        let standard = Data(payload).base64EncodedString()
        if standard != parts[1] {
            try await context.expectRefused([parts[0], standard, parts[2]].joined(separator: "."), "standard base64 payload")
        }
        try await context.expectRefused(
            [parts[0], parts[1] + "=", parts[2]].joined(separator: "."), "payload with a stray padding character")
        // Headers signed with the gateway's own key.
        func signed(header: String) throws -> String {
            let input = Base64URL.encode(Data(header.utf8)) + "." + parts[1]
            return input + "." + Base64URL.encode(try key.privateKey.signature(for: Data(input.utf8)))
        }
        let kid = key.keyID
        // Accepted as the gateway writes it, in any order: the cases below change one thing.
        #expect(
            try await context.fixture.get("/p/web/echo", token: try signed(header: "{\"kid\":\"\(kid)\",\"alg\":\"EdDSA\"}")).status == 200)
        for (name, header) in [
            ("two alg members", "{\"alg\":\"HS256\",\"kid\":\"\(kid)\",\"alg\":\"EdDSA\"}"),
            ("two kid members", "{\"alg\":\"EdDSA\",\"kid\":\"other\",\"kid\":\"\(kid)\"}"),
            ("b64 false", "{\"alg\":\"EdDSA\",\"kid\":\"\(kid)\",\"b64\":false}"),
            ("zip", "{\"alg\":\"EdDSA\",\"kid\":\"\(kid)\",\"zip\":\"DEF\"}"),
            ("jku", "{\"alg\":\"EdDSA\",\"kid\":\"\(kid)\",\"jku\":\"https://attacker.example/jwks\"}"),
            (
                "jwk",
                "{\"alg\":\"EdDSA\",\"kid\":\"\(kid)\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"\(key.publicKeyBase64URL)\"}}"
            ),
            ("typ JOSE+JSON", "{\"alg\":\"EdDSA\",\"kid\":\"\(kid)\",\"typ\":\"JOSE+JSON\"}"),
            ("not an object", "[\"alg\",\"EdDSA\"]"),
        ] {
            try await context.expectRefused(try signed(header: header), name)
        }
        try await context.expectStillServed()
    }

    /// Two `Authorization` headers are ambiguous: refused with 400, whichever comes first.
    /// Before the fix the first header was used.
    @Test func twoAuthorizationHeadersAreRefused() async throws {
        let context = try await Self.context()
        defer { Task { await context.fixture.stop() } }
        let fixture = context.fixture
        for (first, second) in [
            (context.alice.token, "forged"), ("forged", context.alice.token), (context.alice.token, context.alice.token),
        ] {
            let connection = try await TLSTestConnection(port: fixture.gateway.port, caPath: fixture.gateway.pki.caPath)
            try await connection.send(
                "GET /p/web/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(first)\r\nAuthorization: Bearer \(second)\r\n\r\n")
            _ = await connection.wait { $0.text.contains("\r\n\r\n") || $0.isClosed }
            #expect(connection.text.hasPrefix("HTTP/1.1 400"), "\(connection.text.prefix(200))")
            await connection.close()
        }
        try await context.expectStillServed()
    }
}
