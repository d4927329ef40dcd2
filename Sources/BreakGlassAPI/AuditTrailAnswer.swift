/// A session's audit records, each with its inclusion proof against `checkpoint`.
public struct AuditTrailAnswer: Codable, Sendable {
    /// One record of the trail.
    public struct Entry: Codable, Sendable {
        /// The record's leaf index in the log.
        public var index: Int
        /// The record's canonical JSON (the leaf entry).
        public var record: String
        /// Proof hashes, base64, leaf upwards.
        public var proof: [String]

        /// An entry with the given fields.
        public init(index: Int, record: String, proof: [String]) {
            self.index = index
            self.record = record
            self.proof = proof
        }
    }

    /// The session the records belong to.
    public var session: String
    /// The session's pathway.
    public var pathway: String
    /// The signed checkpoint note.
    public var checkpoint: String
    /// The key the gateway says signs its checkpoints (pin it with the auditors' copy).
    public var verifierKey: String
    /// The session's records, in log order.
    public var records: [Entry]

    /// An answer with the given fields.
    public init(session: String, pathway: String, checkpoint: String, verifierKey: String, records: [Entry]) {
        self.session = session
        self.pathway = pathway
        self.checkpoint = checkpoint
        self.verifierKey = verifierKey
        self.records = records
    }

    enum CodingKeys: String, CodingKey {
        case session, pathway, checkpoint, records
        case verifierKey = "verifier_key"
    }
}
