/// The answer to `DELETE /v1/grants/SESSION`.
public struct ReleaseAnswer: Codable, Sendable, Equatable {
    /// The session released.
    public var session: String
    /// The session's pathway.
    public var pathway: String
    /// True: the session has ended (the gateway answers an error otherwise).
    public var released: Bool

    /// An answer with the given fields.
    public init(session: String, pathway: String, released: Bool) {
        self.session = session
        self.pathway = pathway
        self.released = released
    }
}
