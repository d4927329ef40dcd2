import Dispatch

/// What scanning one segment found.
///
/// Frame boundaries are found in one pass; then, on all cores, each frame's CRC is checked and,
/// when asked, its leaf hash computed and its `seq` and `gateway` found.
struct SegmentScan {
    struct Frame {
        /// Where the frame (its header) starts.
        var offset: Int
        var length: Int
        var crc: UInt32
        var payloadStart: Int { offset + SegmentFormat.frameHeaderSize }
        var payloadEnd: Int { payloadStart + length }
    }

    /// The per-frame work done beside the CRC check.
    struct Work {
        var hashLeaves = false
        var findFields = false
    }

    var firstSequence: Int
    var frames: [Frame]
    /// The leaf hash of each frame's record (with `hashLeaves`).
    var leaves: [TreeHash]
    /// Each record's `seq` and `gateway` (with `findFields`); nil where the fast reading failed.
    var fields: [FastRecordFields?]
    /// Offset just past the last good frame.
    var end: Int
    /// Set when a frame is damaged: where, why, and how many non-zero bytes lie at or after it.
    var damage: (offset: Int, reason: String, trailingBytes: Int)?

    /// Frames per task when the frames are checked on several cores.
    static let framesPerTask = 2048

    /// Scans segment bytes; throws only when the header itself is wrong.
    static func scan(
        _ bytes: [UInt8],
        name: String,
        from start: Int = SegmentFormat.headerSize,
        work: Work = Work()
    ) throws(AuditLogError) -> SegmentScan {
        guard bytes.count >= SegmentFormat.headerSize, Array(bytes.prefix(8)) == SegmentFormat.magic else {
            throw AuditLogError(.corrupt, "segment \(name): not an audit segment (bad header)")
        }
        let first = Int(SegmentFormat.readBigEndian(bytes[8..<16], as: UInt64.self))
        guard start >= SegmentFormat.headerSize, start <= bytes.count else {
            throw AuditLogError(.corrupt, "segment \(name): offset \(start) is outside the segment")
        }
        var scan = SegmentScan(firstSequence: first, frames: [], leaves: [], fields: [], end: start, damage: nil)
        var offset = start
        bytes.withUnsafeBytes { raw in
            while offset + SegmentFormat.frameHeaderSize <= raw.count {
                let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                if length == 0 {
                    let trailing = nonZero(bytes, from: offset)
                    if trailing > 0 { scan.damage = (offset, "a zero-length frame is followed by data", trailing) }
                    return
                }
                let crc = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                let frame = Frame(offset: offset, length: length, crc: crc)
                guard length <= SegmentFormat.maximumPayload, frame.payloadEnd <= raw.count else {
                    scan.damage = (offset, "a frame claims \(length) bytes that the segment does not hold", nonZero(bytes, from: offset))
                    return
                }
                scan.frames.append(frame)
                offset = frame.payloadEnd
            }
            if offset < raw.count, nonZero(bytes, from: offset) > 0 {
                scan.damage = (offset, "a frame header is cut short", nonZero(bytes, from: offset))
            }
        }
        if let firstBad = scan.check(bytes, work: work) {
            let offset = scan.frames[firstBad].offset
            scan.damage = (offset, "the record fails its CRC-32C check (altered or damaged)", nonZero(bytes, from: offset))
            scan.frames.removeSubrange(firstBad...)
            if work.hashLeaves { scan.leaves.removeSubrange(firstBad...) }
            if work.findFields { scan.fields.removeSubrange(firstBad...) }
        }
        if let last = scan.frames.last { scan.end = last.payloadEnd }
        return scan
    }

    /// Checks every frame's CRC and does `work`; returns the index of the first frame that fails.
    /// Large segments are split into tasks run on all cores.
    private mutating func check(_ bytes: [UInt8], work: Work) -> Int? {
        let count = frames.count
        let tasks = (count + Self.framesPerTask - 1) / Self.framesPerTask
        var failures = [Int](repeating: Int.max, count: tasks)
        var leaves = [TreeHash](repeating: TreeHash.zero, count: work.hashLeaves ? count : 0)
        var fields = [FastRecordFields?](repeating: nil, count: work.findFields ? count : 0)
        let frames = self.frames
        bytes.withUnsafeBytes { raw in
            failures.withUnsafeMutableBufferPointer { failures in
                leaves.withUnsafeMutableBufferPointer { leaves in
                    fields.withUnsafeMutableBufferPointer { fields in
                        let shared = TaskBuffers(segment: raw, failures: failures, leaves: leaves, fields: fields)
                        let run = { @Sendable (task: Int) in
                            for index in task * Self.framesPerTask..<min(count, (task + 1) * Self.framesPerTask) {
                                let frame = frames[index]
                                let entry = UnsafeRawBufferPointer(rebasing: shared.segment[frame.payloadStart..<frame.payloadEnd])
                                guard CRC32C.checksum(entry) == frame.crc else {
                                    shared.failures[task] = index
                                    return
                                }
                                if work.hashLeaves { shared.leaves[index] = TreeHash.leaf(entry) }
                                if work.findFields { shared.fields[index] = FastRecordFields(entry) }
                            }
                        }
                        if tasks > 1 {
                            DispatchQueue.concurrentPerform(iterations: tasks, execute: run)
                        } else if tasks == 1 {
                            run(0)
                        }
                    }
                }
            }
        }
        self.leaves = leaves
        self.fields = fields
        return failures.min().flatMap { $0 == Int.max ? nil : $0 }
    }

    /// The buffers the tasks share. Safe to send: the segment is only read, and each task writes
    /// only its own slot of `failures` and the entries of its own frames.
    private struct TaskBuffers: @unchecked Sendable {
        var segment: UnsafeRawBufferPointer
        var failures: UnsafeMutableBufferPointer<Int>
        var leaves: UnsafeMutableBufferPointer<TreeHash>
        var fields: UnsafeMutableBufferPointer<FastRecordFields?>
    }

    /// How far past `offset` non-zero bytes reach, looking no further than the largest write the
    /// writer makes (beyond it a preallocated segment holds only zeros that nothing refers to).
    /// Returns `window + 1` when data reaches the end of the window: more than a torn write explains.
    static func nonZero(_ bytes: [UInt8], from offset: Int) -> Int {
        let window = AuditLogReader.tornTailLimit
        let end = min(bytes.count, offset + window)
        guard offset < end else { return 0 }
        let last: Int? = bytes.withUnsafeBytes { raw -> Int? in
            var index = end
            // Words first: a preallocated tail is long and almost all zeros.
            while index - 8 >= offset, raw.loadUnaligned(fromByteOffset: index - 8, as: UInt64.self) == 0 { index -= 8 }
            var position = index - 1
            while position >= offset {
                if raw[position] != 0 { return position }
                position -= 1
            }
            return nil
        }
        guard let last else { return 0 }
        let reach = last - offset + 1
        return end == offset + window && last == end - 1 ? window + 1 : reach
    }
}
