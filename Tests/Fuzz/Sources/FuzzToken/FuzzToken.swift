import BreakGlassCore
import BreakGlassTokens
import Crypto
import Foundation
import FuzzSupport

/// Token verification, three ways, chosen by the first byte:
/// - 0: the input is a token. It is accepted only with a genuine signature, in its canonical spelling.
/// - 1: the input is a header and claims (split at the first zero byte), signed with the gateway's key.
///   Verification decides on the claims; a token it accepts is for the audience, issuer and time asked.
/// - 2: pairs of (position, byte) change a token the gateway issued. Any other spelling is refused.
@main
enum FuzzTokenMain {
    static func main() {
        runFuzzer { data, size in fuzzToken(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    guard let mode = input.byte() else { return 0 }
    let authority = TokenFixture.shared.authority
    let now = TokenFixture.now
    switch mode % 3 {
    case 0:
        // Tokens that the key really signed reach the fuzzer too (the seeds hold one), so the claim is:
        // a token is accepted only if its signature is a valid Ed25519 signature of exactly its first two
        // parts, checked here by swift-crypto directly, and every part is in its one canonical spelling.
        let token = input.restText
        guard blocking({ await TokenFixture.verdict(authority, token, audience: nil, now: now) }) != nil else { return 0 }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        require(parts.count == 3, "an accepted token has \(parts.count) parts")
        let decoded = parts.map { Base64URL.decode($0) }
        require(zip(parts, decoded).allSatisfy { $1.map(Base64URL.encode) == String($0) }, "an accepted token is not canonical: \(token)")
        let signed = Data((parts[0] + "." + parts[1]).utf8)
        let genuine = decoded[2].map { TokenFixture.shared.key.privateKey.publicKey.isValidSignature($0, for: signed) } ?? false
        require(genuine, "a token without a valid signature was accepted: \(token.prefix(300))")
    case 1:
        let rest = input.rest
        let split = rest.firstIndex(of: 0) ?? rest.endIndex
        let header = Base64URL.encode(rest[..<split])
        let claims = Base64URL.encode(rest[split...].dropFirst())
        let signingInput = header + "." + claims
        guard let signature = try? TokenFixture.shared.key.privateKey.signature(for: Data(signingInput.utf8)) else { return 0 }
        let token = signingInput + "." + Base64URL.encode(signature)
        if let claims = blocking({ await TokenFixture.verdict(authority, token, audience: "web", now: now) }) {
            require(claims.aud.value == ["web"], "a token for \(claims.aud.value) was accepted for web")
            require(claims.iss.value == TokenFixture.issuer, "a token from issuer \(claims.iss.value) was accepted")
            require(now.timeIntervalSince(claims.exp.value) < TokenAuthority.maximumSkew, "an expired token was accepted")
        }
    default:
        var bytes = Array(TokenFixture.shared.issued.utf8)
        while let position = input.byte(), let value = input.byte() {
            bytes[Int(position) % bytes.count] = value
        }
        let token = String(decoding: bytes, as: UTF8.self)
        guard token != TokenFixture.shared.issued else { return 0 }
        let verdict = blocking { await TokenFixture.verdict(authority, token, audience: "web", now: now) }
        require(verdict == nil, "another spelling of an issued token was accepted: \(token)")
    }
    return 0
}

/// The gateway's key, its token authority and one token it issued, made once.
struct TokenFixture: Sendable {
    static let issuer = "fuzz-gateway"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let shared = TokenFixture()

    let key: TokenSigningKey
    let authority: TokenAuthority
    let issued: String

    init() {
        let key = TokenSigningKey(privateKey: fixedSigningKey(7))
        let authority = blocking { await TokenAuthority(issuer: Self.issuer, key: key) }
        let grant = Grant(
            session: "0123456789abcdef", user: "alice", pathway: "web", reason: "fuzz", ticket: "INC-1",
            issuedAt: Self.now.addingTimeInterval(-60), expiresAt: Self.now.addingTimeInterval(3600), amr: ["pwd", "otp"],
            source: "127.0.0.1")
        let issued = blocking { (try? await authority.issue(grant)) ?? "" }
        require(!issued.isEmpty, "the fixture could not issue a token")
        self.key = key
        self.authority = authority
        self.issued = issued
    }

    /// The claims of an accepted token, or nil when it is refused.
    static func verdict(_ authority: TokenAuthority, _ token: String, audience: String?, now: Date) async -> GrantClaims? {
        try? await authority.verify(token, audience: audience, now: now)
    }
}

/// With `FUZZ_MAKE_SEEDS=DIR` set, writes one seed for each mode into DIR and exits.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let out = ProcessInfo.processInfo.environment["FUZZ_MAKE_SEEDS"] else { return 0 }
    let token = TokenFixture.shared.issued
    let parts = token.split(separator: ".").map { Base64URL.decode($0) ?? Data() }
    require(parts.count == 3, "the issued token has \(parts.count) parts")
    let seeds: [String: [UInt8]] = [
        "token-issued-other-audience": [0] + Array(token.utf8),
        "token-claims": [1] + Array(parts[0]) + [0] + Array(parts[1]),
        "token-changed": [2, 10, UInt8(ascii: "A"), 200, UInt8(ascii: "_")],
    ]
    do {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for (name, bytes) in seeds { try Data(bytes).write(to: URL(fileURLWithPath: out + "/" + name)) }
    } catch {
        require(false, "cannot write seeds: \(error)")
    }
    exit(0)
}
