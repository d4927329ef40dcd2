import Foundation

/// Records of a log with their inclusion proofs against one signed checkpoint.
public struct AuditInclusion: Sendable {
    /// One record with its inclusion proof.
    public struct Entry: Sendable {
        /// The record's leaf index (its position in the log, from 0).
        public var index: Int
        /// The record's canonical bytes (the leaf entry).
        public var bytes: [UInt8]
        /// The decoded record.
        public var record: AuditRecord
        /// The audit path from the record's leaf to the checkpoint's root.
        public var proof: [MerkleTree.Hash]

        /// An entry for the record at `index` with its bytes, decoded form and proof.
        public init(index: Int, bytes: [UInt8], record: AuditRecord, proof: [MerkleTree.Hash]) {
            self.index = index
            self.bytes = bytes
            self.record = record
            self.proof = proof
        }
    }

    /// The signed checkpoint note the proofs lead to.
    public var checkpoint: String
    /// The records proven, each with its proof.
    public var entries: [Entry]

    /// Proofs of `entries` against the signed note `checkpoint`.
    public init(checkpoint: String, entries: [Entry]) {
        self.checkpoint = checkpoint
        self.entries = entries
    }

    /// Why the proofs do not hold, or nil when the note is signed by `verifier` and every entry's
    /// proof leads from its bytes to the note's root.
    public func problem(verifier: NoteVerifier) -> String? {
        guard let note = SignedNote(text: checkpoint), let parsed = Checkpoint(body: note.body) else {
            return "the checkpoint is not a signed note"
        }
        guard note.isSigned(by: verifier) else { return "the checkpoint is not signed by \(verifier.keyString)" }
        for entry in entries {
            let leaf = MerkleTree.leafHash(entry.bytes)
            guard
                MerkleTree.verifyInclusion(leafHash: leaf, index: entry.index, treeSize: parsed.size, proof: entry.proof, root: parsed.root)
            else {
                return "record \(entry.index) is not included in the checkpoint of size \(parsed.size)"
            }
        }
        return nil
    }
}
