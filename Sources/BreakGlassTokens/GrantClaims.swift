import JWTKit

/// The claims of a breakglass grant token.
public struct GrantClaims: JWTPayload, Equatable {
    /// The gateway id.
    public var iss: IssuerClaim
    /// The user.
    public var sub: SubjectClaim
    /// The pathway (a single audience).
    public var aud: AudienceClaim
    /// When the token was issued.
    public var iat: IssuedAtClaim
    /// The token is not valid before this (the issue time).
    public var nbf: NotBeforeClaim
    /// When the token expires (the grant's expiry).
    public var exp: ExpirationClaim
    /// The session id.
    public var jti: IDClaim
    /// The reason the user gave.
    public var reason: String
    /// The ticket the user named; absent when none.
    public var ticket: String?
    /// Authentication methods used (`pwd`, `otp`).
    public var amr: [String]
    /// `probe` or `drill` for sessions that exercise the gateway; absent for ordinary grants.
    public var tag: String?

    /// Claims with the given values; `tag` is nil for ordinary grants.
    public init(
        iss: IssuerClaim,
        sub: SubjectClaim,
        aud: AudienceClaim,
        iat: IssuedAtClaim,
        nbf: NotBeforeClaim,
        exp: ExpirationClaim,
        jti: IDClaim,
        reason: String,
        ticket: String?,
        amr: [String],
        tag: String? = nil
    ) {
        self.iss = iss
        self.sub = sub
        self.aud = aud
        self.iat = iat
        self.nbf = nbf
        self.exp = exp
        self.jti = jti
        self.reason = reason
        self.ticket = ticket
        self.amr = amr
        self.tag = tag
    }

    /// Time claims are checked by `TokenAuthority` against its own clock, so this does nothing.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}
