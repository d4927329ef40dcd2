import Foundation

/// A grant as the API shows it: the `201` of `POST /v1/grants` (with the token) and the answer of
/// `GET /v1/grants/current` (without). Times are ISO 8601.
public struct GrantAnswer: Codable, Sendable, Equatable {
    /// The bearer token for the pathway (a secret); only in the answer to a login.
    public var token: String?
    /// The session id.
    public var session: String
    /// The pathway granted.
    public var pathway: String
    /// The user the grant was issued to.
    public var user: String
    /// The reason given, as the gateway recorded it.
    public var reason: String
    /// The ticket given; nil when none.
    public var ticket: String?
    /// The methods PAM used (RFC 8176: `pwd`, `otp`, `mfa`).
    public var amr: [String]?
    /// When the grant was issued.
    public var issuedAt: Date
    /// When the grant expires.
    public var expiresAt: Date
    /// Seconds left until the grant expires, as of the answer.
    public var expiresInSeconds: Int
    /// `drill` for a rehearsal; nil for an ordinary grant.
    public var tag: String?
    /// `http` or `tcp`, in the answer to a login (gateways before this field: nil).
    public var kind: String?
    /// In the answer to `GET /v1/grants/current`: `active`, or how the session ended (`released`,
    /// `revoked`, `expired`); nil in the answer to a login, and from gateways before this field.
    public var state: String?

    /// An answer with the given fields.
    public init(
        token: String?, session: String, pathway: String, user: String, reason: String, ticket: String?, amr: [String]?,
        issuedAt: Date, expiresAt: Date, expiresInSeconds: Int, tag: String?, kind: String?, state: String? = nil
    ) {
        self.token = token
        self.session = session
        self.pathway = pathway
        self.user = user
        self.reason = reason
        self.ticket = ticket
        self.amr = amr
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.expiresInSeconds = expiresInSeconds
        self.tag = tag
        self.kind = kind
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case token, session, pathway, user, reason, ticket, amr, tag, kind, state
        case issuedAt = "issued_at"
        case expiresAt = "expires_at"
        case expiresInSeconds = "expires_in_seconds"
    }
}
