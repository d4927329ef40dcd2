import Foundation

/// The `201` of `POST /v1/probe/grants`: one short grant per pathway the probe identity asked for.
public struct ProbeGrantsAnswer: Codable, Sendable, Equatable {
    /// One probe grant.
    public struct Grant: Codable, Sendable, Equatable {
        /// The pathway it opens (for its probe only).
        public var pathway: String
        /// The session id.
        public var session: String
        /// The bearer token (a secret).
        public var token: String
        /// When the grant expires.
        public var expiresAt: Date

        /// A grant with the given fields.
        public init(pathway: String, session: String, token: String, expiresAt: Date) {
            self.pathway = pathway
            self.session = session
            self.token = token
            self.expiresAt = expiresAt
        }

        enum CodingKeys: String, CodingKey {
            case pathway, session, token
            case expiresAt = "expires_at"
        }
    }

    /// The grants, in the order asked.
    public var grants: [Grant]

    /// An answer with `grants`.
    public init(grants: [Grant]) {
        self.grants = grants
    }
}
