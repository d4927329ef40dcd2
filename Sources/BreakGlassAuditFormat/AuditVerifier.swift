import Foundation

/// Checks a copied audit folder end to end, as an auditor would, without the gateway.
public enum AuditVerifier {
    /// What a successful verification found.
    public struct Report: Sendable {
        /// Records read and checked.
        public var records: Int
        /// Bytes of framed records read.
        public var bytes: Int
        /// Root hash of the tree over every record.
        public var root: MerkleTree.Hash
        /// Signed checkpoints checked (the history and the latest).
        public var checkpointsChecked: Int
        /// Tree size of the latest checkpoint; nil when the folder holds none.
        public var latestCheckpointSize: Int?
        /// Tree size of the auditor's trusted checkpoint; nil when none was given.
        public var trustedCheckpointSize: Int?
        /// Things that do not make the log invalid but that an auditor should know.
        public var notes: [String]
    }

    /// Recomputes the tree over every record; checks every frame, every checkpoint's signature,
    /// that each checkpoint matches the records it covers (and so that successive checkpoints are
    /// consistent), and that `trustedCheckpoint` (a note the auditor kept) is covered too.
    public static func verify(
        directory: String,
        verifier: NoteVerifier,
        trustedCheckpoint: String? = nil,
        progress: ((_ segment: Int, _ of: Int) -> Void)? = nil
    ) throws(AuditLogError) -> Report {
        // Checkpoints first: whatever they cover was durable before the segments are read, so a log
        // that is still being written is never mistaken for a truncated one.
        var history = try AuditLogReader.checkpointHistory(directory: directory)
        if let latest = try AuditLogReader.latestCheckpoint(directory: directory) { history.append(latest) }
        var labelled: [(label: String, checkpoint: Checkpoint)] = []
        for (position, text) in history.enumerated() {
            let label = position == history.count - 1 ? "the latest checkpoint" : "checkpoint \(position + 1) of the history"
            let checkpoint = try parse(text, label: label, verifier: verifier)
            if let previous = labelled.last?.checkpoint, previous.size > checkpoint.size {
                throw AuditLogError(
                    .rollback,
                    "\(label) (size \(checkpoint.size)) is smaller than an earlier one (size \(previous.size)): the log was rolled back"
                )
            }
            labelled.append((label, checkpoint))
        }
        var trustedSize: Int?
        if let trustedCheckpoint {
            let checkpoint = try parse(trustedCheckpoint, label: "the trusted checkpoint", verifier: verifier)
            labelled.append(("the trusted checkpoint", checkpoint))
            trustedSize = checkpoint.size
        }
        // One streaming pass: each record's leaf goes into the tree, and the root is compared with
        // every checkpoint as the tree reaches its size. Two checkpoints that both match the records
        // are consistent with each other by construction.
        let ordered = labelled.sorted { $0.checkpoint.size < $1.checkpoint.size }
        var next = ordered.startIndex
        var tree = AppendOnlyTree()
        func compare() throws(AuditLogError) {
            while next < ordered.endIndex, ordered[next].checkpoint.size == tree.size {
                guard tree.root == ordered[next].checkpoint.root else {
                    throw AuditLogError(
                        .corrupt,
                        "the first \(tree.size) records do not match \(ordered[next].label): a record was altered, removed or reordered (with its CRC rewritten)"
                    )
                }
                next += 1
            }
        }
        try compare()
        let latestSize = labelled.last(where: { $0.label == "the latest checkpoint" })?.checkpoint.size
        let summary = try AuditLogReader.scan(
            directory: directory,
            decode: false,
            checkpointSize: latestSize ?? 0,
            // Runs of good records are hashed into subtrees on all cores; runs end at every
            // checkpoint's size, where the root is compared.
            subtrees: AuditLogReader.SubtreeMode(gateway: verifier.name, cuts: ordered.map(\.checkpoint.size)),
            progress: progress,
            visitSubtrees: { subtrees throws(AuditLogError) in
                for subtree in subtrees { tree.append(subtree: subtree.hash, size: subtree.size) }
                try compare()
            }
        ) { visit throws(AuditLogError) in
            guard visit.gateway == verifier.name else {
                throw AuditLogError(
                    .corrupt,
                    "segment \(visit.segment) offset \(visit.offset): record \(visit.sequence) is from log \(visit.gateway), not \(verifier.name)"
                )
            }
            tree.append(leaf: visit.leaf ?? TreeHash.leaf(visit.payload))
            try compare()
        }
        if next < ordered.endIndex {
            let longest = ordered[next]
            throw AuditLogError(
                .rollback,
                "log is shorter than \(longest.label) (\(tree.size) records, the checkpoint covers \(longest.checkpoint.size)): rollback or truncation"
            )
        }
        var notes: [String] = []
        if let torn = summary.tornTail {
            notes.append(
                "segment \(torn.segment) ends in \(torn.bytes) bytes of an interrupted write at offset \(torn.offset) (never acknowledged; cleared when the gateway starts)"
            )
        }
        if history.isEmpty { notes.append("no signed checkpoint yet: nothing binds these records") }
        if let latestSize, latestSize < tree.size {
            notes.append("\(tree.size - latestSize) newest records are not yet covered by a signed checkpoint")
        }
        return Report(
            records: tree.size,
            bytes: summary.bytes,
            root: tree.root,
            checkpointsChecked: history.count,
            latestCheckpointSize: latestSize,
            trustedCheckpointSize: trustedSize,
            notes: notes
        )
    }

    /// Parses one signed checkpoint and checks its origin and signature; returns it.
    static func parse(_ text: String, label: String, verifier: NoteVerifier) throws(AuditLogError) -> Checkpoint {
        guard let note = SignedNote(text: text), let checkpoint = Checkpoint(body: note.body) else {
            throw AuditLogError(.badCheckpoint, "\(label) is not a well-formed signed checkpoint")
        }
        guard checkpoint.origin == verifier.name else {
            throw AuditLogError(.badCheckpoint, "\(label) is for log \(checkpoint.origin), not \(verifier.name)")
        }
        guard note.isSigned(by: verifier) else {
            throw AuditLogError(.badCheckpoint, "\(label) is not signed by key \(verifier.keyString) (forged, or signed by another key)")
        }
        return checkpoint
    }
}
