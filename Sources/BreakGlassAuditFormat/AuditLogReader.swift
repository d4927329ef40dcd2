import Foundation

/// What an audit folder holds, read and checked frame by frame.
public struct AuditLogContents: Sendable {
    /// One record read from a segment.
    public struct Entry: Sendable {
        /// File name of the segment holding the record.
        public var segment: String
        /// Offset of the record's frame in its segment.
        public var offset: Int
        /// The record's canonical bytes (the frame's payload).
        public var bytes: [UInt8]
        /// The record's sequence number.
        public var sequence: Int
        /// The gateway that wrote the record.
        public var gateway: String
        /// The decoded record; nil when the log was read with `decode: false`.
        public var record: AuditRecord?
    }

    /// A damaged end of the last segment: records that were being written when the writer stopped.
    public struct TornTail: Sendable, Equatable {
        /// File name of the segment.
        public var segment: String
        /// Offset of the first damaged frame.
        public var offset: Int
        /// Bytes from that offset to the end of the data.
        public var bytes: Int
        /// What is wrong with the first damaged frame.
        public var reason: String
    }

    /// Every good record, in sequence order.
    public var entries: [Entry]
    /// The damaged end of the last segment; nil when the log ends cleanly.
    public var tornTail: TornTail?
    /// The last segment's index and the offset just past its last good frame.
    public var lastSegment: (index: Int, end: Int)?
}

/// Where reading can start instead of at the first record: the writer's saved state.
public struct ResumePoint: Sendable, Codable, Equatable {
    /// The sequence number of the next record.
    public var sequence: Int
    /// The segment holding the next record, and the offset where it starts.
    public var segment: Int
    /// Offset of the next record in that segment.
    public var offset: Int

    /// A resume point at record `sequence`, found in segment `segment` at byte `offset`.
    public init(sequence: Int, segment: Int, offset: Int) {
        self.sequence = sequence
        self.segment = segment
        self.offset = offset
    }
}

/// Reads the segments of an audit folder in order and checks framing, CRCs, segment continuity and
/// record sequence numbers. Any damage except a torn tail of the last segment is an error naming the
/// segment and offset.
public enum AuditLogReader {
    /// Largest damaged tail treated as an interrupted write rather than corruption.
    public static let tornTailLimit = 8 << 20

    /// The folder holding the segments of the audit folder `directory`.
    public static func segmentsFolder(_ directory: String) -> String { directory + "/segments" }

    /// Segment indexes present, sorted; a gap is an error.
    static func segmentIndexes(_ directory: String) throws(AuditLogError) -> [Int] {
        let folder = segmentsFolder(directory)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else {
            if FileManager.default.fileExists(atPath: directory) { return [] }
            throw AuditLogError(.io, "\(directory) is not an audit log folder")
        }
        let indexes = names.compactMap(SegmentFormat.index(of:)).sorted()
        for (position, index) in indexes.enumerated() where index != position + 1 {
            throw AuditLogError(
                .corrupt,
                "segment \(SegmentFormat.fileName(index: position + 1)) is missing (found \(SegmentFormat.fileName(index: index)) next)")
        }
        return indexes
    }

    /// One record met while scanning.
    public struct Visit {
        /// File name of the segment holding the record.
        public var segment: String
        /// Offset of the record's frame in its segment.
        public var offset: Int
        /// The record's canonical bytes.
        public var payload: ArraySlice<UInt8>
        /// The record's sequence number.
        public var sequence: Int
        /// The gateway that wrote the record.
        public var gateway: String
        /// Decoded only when asked for (`decode: true`).
        public var record: AuditRecord?
        /// The record's leaf hash, when asked for (`hashLeaves: true`).
        package var leaf: TreeHash?
    }

    /// Tree mode for `scan`: runs of records that all pass their checks, from the gateway named
    /// here, reach `visitSubtrees` as the perfect subtrees covering them, hashed on all cores. The
    /// other records reach `visit` one by one, as without it.
    package struct SubtreeMode {
        var gateway: String
        /// Tree sizes (ascending) at which the caller looks at the tree: runs end there.
        var cuts: [Int]

        package init(gateway: String, cuts: [Int]) {
            self.gateway = gateway
            self.cuts = cuts
        }
    }

    /// What a scan found besides the records.
    public struct ScanSummary {
        /// Records read.
        public var records: Int
        /// Bytes of framed records.
        public var bytes: Int
        /// The damaged end of the last segment; nil when the log ends cleanly.
        public var tornTail: AuditLogContents.TornTail?
        /// The last segment's index and the offset just past its last good frame; nil when there is none.
        public var lastSegment: (index: Int, end: Int)?
    }

    /// Reads every record; `progress` is told the segment being read and how many there are.
    public static func read(
        directory: String,
        resumingAt resume: ResumePoint? = nil,
        until stop: ResumePoint? = nil,
        decode: Bool = true,
        checkpointSize: Int? = nil,
        progress: ((_ segment: Int, _ of: Int) -> Void)? = nil
    ) throws(AuditLogError) -> AuditLogContents {
        var entries: [AuditLogContents.Entry] = []
        let summary = try scan(
            directory: directory,
            resumingAt: resume,
            until: stop,
            decode: decode,
            checkpointSize: checkpointSize,
            progress: progress
        ) { visit in
            entries.append(
                .init(
                    segment: visit.segment,
                    offset: visit.offset,
                    bytes: Array(visit.payload),
                    sequence: visit.sequence,
                    gateway: visit.gateway,
                    record: visit.record
                )
            )
        }
        return AuditLogContents(
            entries: entries,
            tornTail: summary.tornTail,
            lastSegment: summary.lastSegment
        )
    }

    /// Visits every record in order without keeping them: framing, CRCs, segment continuity and
    /// sequence numbers are checked on the way.
    static package func scan(
        directory: String,
        resumingAt resume: ResumePoint? = nil,
        until stop: ResumePoint? = nil,
        decode: Bool = true,
        checkpointSize: Int? = nil,
        hashLeaves: Bool = false,
        subtrees: SubtreeMode? = nil,
        progress: ((_ segment: Int, _ of: Int) -> Void)? = nil,
        visitSubtrees: ([(size: Int, hash: TreeHash)]) throws(AuditLogError) -> Void = { _ in },
        visit: (Visit) throws(AuditLogError) -> Void
    ) throws(AuditLogError) -> ScanSummary {
        let indexes = try segmentIndexes(directory).filter { $0 >= (resume?.segment ?? 0) && $0 <= (stop?.segment ?? Int.max) }
        if let resume, indexes.first != resume.segment {
            throw AuditLogError(.corrupt, "segment \(SegmentFormat.fileName(index: resume.segment)) is missing")
        }
        // Records a signed checkpoint covers were durable before it was signed: damage among them is
        // corruption, never an interrupted write. Callers that read the checkpoint already pass its size.
        let covered =
            checkpointSize
            ?? (try? latestCheckpoint(directory: directory)).flatMap { $0 }.flatMap(SignedNote.init(text:))
            .flatMap { Checkpoint(body: $0.body) }?.size ?? 0
        var next = resume?.sequence ?? 0
        var summary = ScanSummary(records: 0, bytes: 0, tornTail: nil, lastSegment: nil)
        let work = SegmentScan.Work(hashLeaves: hashLeaves, findFields: !decode && subtrees == nil)
        let jobs = indexes.enumerated().map { position, index in
            SegmentPrefetcher.Job(
                path: segmentsFolder(directory) + "/" + SegmentFormat.fileName(index: index),
                name: SegmentFormat.fileName(index: index),
                limit: stop.flatMap { index == $0.segment ? $0.offset : nil },
                start: position == 0 ? resume?.offset ?? SegmentFormat.headerSize : SegmentFormat.headerSize
            )
        }
        // The fast match compares the name as it appears in JSON: one that JSON escapes goes the careful way.
        let gateway = subtrees.map { Array($0.gateway.utf8) }.flatMap { bytes in
            bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") } ? nil : bytes
        }
        // With several segments, the next one is read while this one is checked and visited.
        let prefetcher = jobs.count > 1 ? SegmentPrefetcher(jobs: jobs) : nil
        defer { prefetcher?.cancel() }
        for (position, index) in indexes.enumerated() {
            progress?(position + 1, indexes.count)
            let name = jobs[position].name
            var none: [UInt8]? = nil
            let (bytes, framesRead) = try (prefetcher?.next() ?? SegmentPrefetcher.read(jobs[position], reusing: &none)).get()
            var segmentWork = work
            if let subtrees, let gateway {
                segmentWork.tree = SegmentScan.TreeWork(firstSequence: next, gateway: gateway, cuts: subtrees.cuts)
            }
            let scan = try SegmentScan.scan(bytes, name: name, from: jobs[position].start, work: segmentWork, index: framesRead)
            let resumesHere = position == 0 && resume != nil
            guard resumesHere || scan.firstSequence == next else {
                throw AuditLogError(
                    .corrupt,
                    "segment \(name) starts at record \(scan.firstSequence), expected \(next): records are missing or a segment was replaced"
                )
            }
            let isLast = position == indexes.count - 1
            if let damage = scan.damage {
                guard isLast, damage.trailingBytes <= tornTailLimit, next + scan.frames.count >= covered else {
                    throw AuditLogError(.corrupt, "segment \(name) offset \(damage.offset): \(damage.reason)")
                }
                summary.tornTail = AuditLogContents.TornTail(
                    segment: name,
                    offset: damage.offset,
                    bytes: damage.trailingBytes,
                    reason: damage.reason
                )
            }
            for piece in scan.pieces {
                if let subtrees = piece.subtrees, let first = piece.frames.first, let last = piece.frames.last {
                    try visitSubtrees(subtrees)
                    next += piece.frames.count
                    summary.records += piece.frames.count
                    // Frames lie end to end.
                    summary.bytes += scan.frames[last].payloadEnd - scan.frames[first].offset
                    continue
                }
                for frameIndex in piece.frames {
                    let frame = scan.frames[frameIndex]
                    let payload = bytes[frame.payloadStart..<frame.payloadEnd]
                    var record: AuditRecord?
                    // In tree mode the fields are read only here, for the few records that need it.
                    var fields =
                        decode ? nil : scan.fields.isEmpty ? payload.withUnsafeBytes(FastRecordFields.init) : scan.fields[frameIndex]
                    if fields == nil {
                        do throws(AuditLogError) {
                            let decoded = try AuditRecord(decoding: payload)
                            record = decoded
                            fields = FastRecordFields(sequence: decoded.sequence, gateway: decoded.gateway)
                        } catch {
                            throw AuditLogError(.corrupt, "segment \(name) offset \(frame.offset): \(error.message)")
                        }
                    }
                    guard let fields else { continue }
                    guard fields.sequence == next else {
                        throw AuditLogError(
                            .corrupt,
                            "segment \(name) offset \(frame.offset): record has seq \(fields.sequence), expected \(next) (a record was removed, added or reordered)"
                        )
                    }
                    try visit(
                        Visit(
                            segment: name,
                            offset: frame.offset,
                            payload: payload,
                            sequence: next,
                            gateway: fields.gateway,
                            record: record,
                            leaf: scan.leaves.isEmpty ? nil : scan.leaves[frameIndex]
                        )
                    )
                    next += 1
                    summary.records += 1
                    summary.bytes += SegmentFormat.frameHeaderSize + frame.length
                }
            }
            if isLast { summary.lastSegment = (index, scan.end) }
            prefetcher?.recycle(consume bytes)
        }
        return summary
    }

    /// The latest signed checkpoint's text, or nil when none was written yet.
    public static func latestCheckpoint(directory: String) throws(AuditLogError) -> String? {
        let path = directory + "/checkpoint"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return String(decoding: try FileIO.read(path, limit: 1 << 20), as: UTF8.self)
    }

    /// Every checkpoint in the history file, oldest first.
    public static func checkpointHistory(directory: String) throws(AuditLogError) -> [String] {
        let path = directory + "/checkpoints.log"
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let bytes = try FileIO.read(path)
        var notes: [String] = []
        var offset = 0
        while offset + SegmentFormat.frameHeaderSize <= bytes.count {
            let length = Int(SegmentFormat.readBigEndian(bytes[offset..<offset + 4], as: UInt32.self))
            if length == 0 { break }
            let crc = SegmentFormat.readBigEndian(bytes[offset + 4..<offset + 8], as: UInt32.self)
            let start = offset + SegmentFormat.frameHeaderSize
            // A torn last entry (cut short, or failing its CRC with nothing after it) is tolerated: the
            // latest checkpoint is also kept in its own file.
            guard length <= 1 << 20, start + length <= bytes.count else { break }
            guard CRC32C.checksum(bytes[start..<start + length]) == crc else {
                if !bytes[(start + length)...].contains(where: { $0 != 0 }) { break }
                throw AuditLogError(.corrupt, "checkpoints.log offset \(offset): the entry fails its CRC-32C check")
            }
            notes.append(String(decoding: bytes[start..<start + length], as: UTF8.self))
            offset = start + length
        }
        return notes
    }
}
