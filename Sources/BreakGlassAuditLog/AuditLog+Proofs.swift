import BreakGlassAuditFormat
import Foundation
import Synchronization

extension AuditLog {
    /// Signs a fresh checkpoint, reads the records written since `date` back from the segment files,
    /// and proves each one that `matching` selects included in that checkpoint. Reads only the
    /// records after the latest checkpoint mark before `date` (the whole log when it is older than
    /// every mark kept), on a thread of its own.
    public func proveRecent(
        since date: Date, matching: @escaping @Sendable (AuditRecord) -> Bool
    ) async throws(AuditLogError) -> AuditInclusion {
        guard marks.withLock({ $0.beginProof() }) else {
            throw AuditLogError(.busy, "other proofs are being computed; try again in a moment")
        }
        defer { marks.withLock { $0.endProof() } }
        let note: String
        do {
            note = try await checkpoint()
        } catch let error as AuditLogError {
            throw error
        } catch {
            throw AuditLogError(.io, "cannot sign a checkpoint: \(error)")
        }
        guard let signed = SignedNote(text: note), let checkpoint = Checkpoint(body: signed.body) else {
            throw AuditLogError(.badCheckpoint, "the new checkpoint does not parse")
        }
        let (mark, end) = marks.withLock { marks in
            // Where the checkpoint's records end: reading stops there instead of at the segment's end.
            (marks.mark(before: date) ?? .empty, marks.mark(size: checkpoint.size))
        }
        let directory = self.directory
        let result: Result<AuditInclusion, AuditLogError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(
                    returning: Result { () throws(AuditLogError) in
                        try Self.prove(
                            directory: directory, mark: mark, end: end, checkpoint: checkpoint, note: note, matching: matching)
                    })
            }
            thread.name = "breakglass-audit-proofs"
            thread.start()
        }
        return try result.get()
    }

    private static func prove(
        directory: String, mark: TreeMark, end: TreeMark?, checkpoint: Checkpoint, note: String, matching: (AuditRecord) -> Bool
    ) throws(AuditLogError) -> AuditInclusion {
        var leaves: [MerkleTree.Hash] = []
        var selected: [(index: Int, bytes: [UInt8], record: AuditRecord)] = []
        _ = try AuditLogReader.scan(
            directory: directory,
            resumingAt: mark.tree.size == 0 ? nil : mark.resumePoint,
            until: end?.resumePoint,
            decode: true,
            checkpointSize: checkpoint.size,
            hashLeaves: true
        ) { visit in
            guard visit.sequence < checkpoint.size else { return }
            leaves.append((visit.leaf ?? TreeHash.leaf(visit.payload)).bytes)
            if let record = visit.record, matching(record) {
                selected.append((visit.sequence, Array(visit.payload), record))
            }
        }
        let tree = RecentTree(base: mark.tree, leaves: leaves)
        guard tree.size == checkpoint.size else {
            throw AuditLogError(
                .rollback, "the segments hold \(tree.size) records but the new checkpoint covers \(checkpoint.size)")
        }
        guard checkpoint.size == 0 || tree.hash(0..<checkpoint.size) == checkpoint.root else {
            throw AuditLogError(.corrupt, "the records on disk do not match the checkpoint just signed")
        }
        var entries: [AuditInclusion.Entry] = []
        for item in selected {
            guard let proof = tree.inclusionProof(index: item.index) else {
                throw AuditLogError(.corrupt, "no inclusion proof for record \(item.index)")
            }
            entries.append(AuditInclusion.Entry(index: item.index, bytes: item.bytes, record: item.record, proof: proof))
        }
        return AuditInclusion(checkpoint: note, entries: entries)
    }
}
