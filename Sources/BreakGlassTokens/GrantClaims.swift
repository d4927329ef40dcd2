import JWTKit

/// The claims of a breakglass grant token.
public struct GrantClaims: JWTPayload, Equatable {
    /// The gateway id.
    public var iss: IssuerClaim
    /// The user.
    public var sub: SubjectClaim
    /// The pathway (a single audience).
    public var aud: AudienceClaim
    public var iat: IssuedAtClaim
    public var nbf: NotBeforeClaim
    public var exp: ExpirationClaim
    /// The session id.
    public var jti: IDClaim
    public var reason: String
    public var ticket: String?
    public var amr: [String]
    /// `probe` or `drill` for sessions that exercise the gateway; absent for ordinary grants.
    public var tag: String?

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
