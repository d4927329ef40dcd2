/// The policy's answer to a grant request.
public enum PolicyDecision: Sendable, Equatable {
    /// Granted on these terms.
    case allow(GrantTerms)
    /// Refused; the error carries the code and the policy's reason.
    case deny(BreakGlassError)
}

/// The terms of an allowed grant.
public struct GrantTerms: Sendable, Equatable {
    public var user: String
    public var pathway: String
    public var reason: String
    public var ticket: String?
    public var duration: Duration

    public init(user: String, pathway: String, reason: String, ticket: String?, duration: Duration) {
        self.user = user
        self.pathway = pathway
        self.reason = reason
        self.ticket = ticket
        self.duration = duration
    }
}
