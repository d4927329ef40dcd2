import BreakGlassAuditFormat
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What opening the log found and set up for the writer: the tree of the records on disk, the segment
/// it continues (open), the checkpoint history (open), and what start-up trusted or repaired.
struct AuditRecovery: Sendable {
    var tree = AppendOnlyTree()
    var segmentIndex = 0
    var segmentFD: Int32 = -1
    var segmentEnd = 0
    var historyFD: Int32 = -1
    /// Size of the latest checkpoint; -1 when there is none.
    var checkpointSize = -1
    /// Bytes of a torn tail that were cleared.
    var recoveredBytes = 0
    /// Where start-up resumed from the saved state (nil after a full scan), and the root there.
    var resumedAt: ResumePoint?
    var resumedRoot: MerkleTree.Hash?
    /// Why the log starts degraded (little free space), if it does.
    var warning: String?

    /// Opens (or creates) the log in `directory`, recovering a torn tail and checking the latest
    /// checkpoint; any other damage refuses to open with the segment and offset.
    static func run(
        directory: String, origin: String, signer: NoteSigner, options: AuditLogOptions, logger: Logger
    ) throws(AuditLogError) -> AuditRecovery {
        var recovery = AuditRecovery()
        try FileIO.makeDirectory(directory)
        try FileIO.makeDirectory(AuditLogReader.segmentsFolder(directory))
        var latest: Checkpoint?
        if let text = try AuditLogReader.latestCheckpoint(directory: directory) {
            guard let note = SignedNote(text: text), let checkpoint = Checkpoint(body: note.body) else {
                throw AuditLogError(.badCheckpoint, "\(directory)/checkpoint is not a signed checkpoint")
            }
            guard note.isSigned(by: signer.verifier), checkpoint.origin == origin else {
                throw AuditLogError(
                    .badCheckpoint, "\(directory)/checkpoint is not signed by this log's key (\(signer.verifier.keyString))")
            }
            latest = checkpoint
        }
        // Fast path: the saved state matches the latest checkpoint, so only later records are read.
        var resume: ResumePoint?
        var tree = AppendOnlyTree()
        if let latest, let state = AuditTreeState.load(directory), state.size == latest.size, let saved = state.tree,
            saved.root == latest.root
        {
            tree = saved
            resume = ResumePoint(sequence: state.size, segment: state.segment, offset: state.offset)
            recovery.resumedAt = resume
            recovery.resumedRoot = saved.root
        }
        var rootAtCheckpoint: MerkleTree.Hash? = resume == nil && latest?.size == 0 ? MerkleTree.emptyRoot : nil
        let contents = try AuditLogReader.scan(
            directory: directory,
            resumingAt: resume,
            decode: false,
            checkpointSize: latest?.size ?? 0,
            hashLeaves: true
        ) { visit throws(AuditLogError) in
            guard visit.gateway == origin else {
                throw AuditLogError(
                    .corrupt,
                    "segment \(visit.segment) offset \(visit.offset): record \(visit.sequence) belongs to log \(visit.gateway), not \(origin)"
                )
            }
            tree.append(leaf: visit.leaf ?? TreeHash.leaf(visit.payload))
            if resume == nil, tree.size == latest?.size { rootAtCheckpoint = tree.root }
        }
        recovery.tree = tree
        if let latest {
            guard latest.size <= tree.size else {
                throw AuditLogError(
                    .rollback,
                    "the log holds \(tree.size) records but its latest checkpoint covers \(latest.size): records were lost (rollback or truncation)"
                )
            }
            if resume == nil {
                guard rootAtCheckpoint == latest.root else {
                    throw AuditLogError(
                        .corrupt, "the first \(latest.size) records do not match the latest signed checkpoint: the log was altered")
                }
            }
            recovery.checkpointSize = latest.size
        }
        logger.info(
            "audit log recovery", metadata: ["resumed_at": "\(resume?.sequence ?? 0)", "records_read": "\(contents.records)"])
        let segments = AuditLogReader.segmentsFolder(directory)
        if let last = contents.lastSegment {
            recovery.segmentIndex = last.index
            let path = segments + "/" + SegmentFormat.fileName(index: last.index)
            recovery.segmentFD = FileIO.openFile(path, O_RDWR | O_CLOEXEC)
            guard recovery.segmentFD >= 0 else { throw FileIO.failure("cannot open", path) }
            recovery.segmentEnd = last.end
            if let torn = contents.tornTail {
                try FileIO.write(recovery.segmentFD, [UInt8](repeating: 0, count: torn.bytes), at: torn.offset, path: path)
                try FileIO.syncData(recovery.segmentFD, path: path)
                recovery.recoveredBytes = torn.bytes
                logger.warning(
                    "audit log: torn tail cleared",
                    metadata: ["segment": "\(torn.segment)", "offset": "\(torn.offset)", "bytes": "\(torn.bytes)"]
                )
            }
        } else {
            recovery.segmentFD = try createSegment(directory: directory, index: 1, firstSequence: 0, size: options.segmentSize)
            recovery.segmentIndex = 1
            recovery.segmentEnd = SegmentFormat.headerSize
            recovery.warning = spaceWarning(directory: directory, options: options)
            if let warning = recovery.warning { logger.warning("audit log degraded", metadata: ["reason": "\(warning)"]) }
        }
        let historyPath = directory + "/checkpoints.log"
        recovery.historyFD = FileIO.openFile(historyPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard recovery.historyFD >= 0 else { throw FileIO.failure("cannot open", historyPath) }
        try FileIO.syncDirectory(directory)
        try FileIO.replaceAtomically(directory + "/audit-key.pub", with: Array((signer.verifier.keyString + "\n").utf8))
        logger.notice(
            "audit log open", metadata: ["directory": "\(directory)", "records": "\(tree.size)", "segment": "\(recovery.segmentIndex)"])
        return recovery
    }

    /// Creates, preallocates and syncs segment `index`, then syncs the folder; returns its open file.
    static func createSegment(directory: String, index: Int, firstSequence: Int, size: Int) throws(AuditLogError) -> Int32 {
        let folder = AuditLogReader.segmentsFolder(directory)
        let path = folder + "/" + SegmentFormat.fileName(index: index)
        let fd = FileIO.openFile(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.failure("cannot create segment", path) }
        let allocated = posix_fallocate(fd, 0, off_t(size))
        guard allocated == 0 || allocated == EOPNOTSUPP || allocated == EINVAL else {
            FileIO.closeFile(fd)
            unlink(path)
            errno = allocated
            throw FileIO.failure("cannot preallocate segment", path)
        }
        do throws(AuditLogError) {
            try FileIO.write(fd, SegmentFormat.header(firstSequence: firstSequence), at: 0, path: path)
            guard fsync(fd) == 0 else { throw FileIO.failure("cannot flush", path) }
            try FileIO.syncDirectory(folder)
        } catch {
            FileIO.closeFile(fd)
            throw error
        }
        return fd
    }

    /// Why the log is degraded for lack of free space, if it is.
    static func spaceWarning(directory: String, options: AuditLogOptions) -> String? {
        guard let free = FileIO.freeBytes(AuditLogReader.segmentsFolder(directory)), free < options.warnFreeBytes else { return nil }
        return "only \(free >> 20) MiB free for the audit log"
    }
}
