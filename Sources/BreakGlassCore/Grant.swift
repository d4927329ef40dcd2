import Foundation

/// An issued emergency grant: who, where, why, and until when.
public struct Grant: Sendable, Equatable, Codable {
    /// The session id (the token's `jti`): 128 random bits, hex.
    public var session: String
    /// The user the grant was issued to.
    public var user: String
    /// The pathway granted.
    public var pathway: String
    /// The reason the user gave.
    public var reason: String
    /// The ticket the user named; nil when none.
    public var ticket: String?
    /// When the grant was issued.
    public var issuedAt: Date
    /// When the grant expires.
    public var expiresAt: Date
    /// Authentication methods used (`pwd`, `otp`).
    public var amr: [String]
    /// The client address the grant was requested from.
    public var source: String?
    /// What the session is for when it is not an engineer's own access: a self-test or a drill.
    public var tag: Tag?

    /// Marks sessions that exercise the gateway rather than fix something.
    public enum Tag: String, Sendable, Codable, CaseIterable {
        /// A gateway self-test round: can do nothing but the pathway's probe.
        case probe
        /// A drill: an engineer rehearsing the whole flow; a normal grant otherwise.
        case drill
    }

    /// A grant with the given fields; `tag` is nil for an engineer's own access.
    public init(
        session: String,
        user: String,
        pathway: String,
        reason: String,
        ticket: String?,
        issuedAt: Date,
        expiresAt: Date,
        amr: [String],
        source: String?,
        tag: Tag? = nil
    ) {
        self.session = session
        self.user = user
        self.pathway = pathway
        self.reason = reason
        self.ticket = ticket
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.amr = amr
        self.source = source
        self.tag = tag
    }

    /// A new random 128-bit session id in lowercase hex.
    public static func newSessionID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return hex(high) + hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
