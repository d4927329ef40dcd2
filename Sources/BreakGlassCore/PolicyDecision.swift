/// The policy's answer to a grant request.
public enum PolicyDecision: Sendable, Equatable {
    /// Granted on these terms.
    case allow(GrantTerms)
    /// Refused; the error carries the code and the policy's reason.
    case deny(BreakGlassError)
}

/// The terms of an allowed grant.
public struct GrantTerms: Sendable, Equatable {
    /// The user the grant is for.
    public var user: String
    /// The pathway granted.
    public var pathway: String
    /// The reason the user gave.
    public var reason: String
    /// The ticket the user named; nil when none.
    public var ticket: String?
    /// How long the grant lasts: the requested length or the pathway's default, at most its maximum.
    public var duration: Duration

    /// Terms with the given fields.
    public init(user: String, pathway: String, reason: String, ticket: String?, duration: Duration) {
        self.user = user
        self.pathway = pathway
        self.reason = reason
        self.ticket = ticket
        self.duration = duration
    }
}
