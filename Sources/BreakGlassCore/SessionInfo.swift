import Foundation

/// What the gateway knows of one grant's session: whose it is, what it opens, and when it ends.
public struct SessionInfo: Sendable, Equatable {
    /// The grant's session ID.
    public var session: String
    /// The user the grant was issued to.
    public var user: String
    /// The pathway the grant opens.
    public var pathway: String
    /// When the grant was issued.
    public var issuedAt: Date
    /// When the grant expires (earlier than its token says if a policy reload shortened it).
    public var expiresAt: Date
    /// `probe` sessions can do nothing but their pathway's probe.
    public var tag: Grant.Tag?

    /// The session a grant describes.
    public init(grant: Grant) {
        self.init(
            session: grant.session, user: grant.user, pathway: grant.pathway, issuedAt: grant.issuedAt, expiresAt: grant.expiresAt,
            tag: grant.tag)
    }

    /// A session with the given fields.
    public init(session: String, user: String, pathway: String, issuedAt: Date, expiresAt: Date, tag: Grant.Tag? = nil) {
        self.tag = tag
        self.session = session
        self.user = user
        self.pathway = pathway
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }
}
