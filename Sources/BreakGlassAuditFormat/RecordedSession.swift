import Foundation

/// A grant as the audit log records it: its `grant.issued` record and, once recorded, its end.
public struct RecordedSession: Sendable, Equatable {
    /// The session id.
    public var session: String
    /// The user the grant was issued to.
    public var user: String
    /// The pathway granted.
    public var pathway: String
    /// When the grant was issued.
    public var issuedAt: Date
    /// When the grant expires.
    public var expiresAt: Date
    /// `probe` or `drill`; nil for ordinary grants.
    public var tag: String?
    /// `released`, `revoked` or `expired`; nil while no end is recorded.
    public var ending: String?

    /// A recorded grant with the given fields.
    public init(
        session: String, user: String, pathway: String, issuedAt: Date, expiresAt: Date, tag: String? = nil, ending: String? = nil
    ) {
        self.session = session
        self.user = user
        self.pathway = pathway
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.tag = tag
        self.ending = ending
    }
}
