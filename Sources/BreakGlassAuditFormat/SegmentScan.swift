import Dispatch

/// What scanning one segment found.
///
/// Frame boundaries are found in one pass; then, on all cores, each frame's CRC is checked and,
/// when asked, its leaf hash computed, its `seq` and `gateway` found, and runs of leaves folded
/// into the perfect subtrees of the log's Merkle tree.
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
        /// Fold runs of leaves into subtrees. Their leaves are kept only with `hashLeaves`.
        var tree: TreeWork?
    }

    /// Tree mode: frame `i` must hold the record with `seq` = `firstSequence + i` from `gateway`.
    /// Runs end at every multiple of `framesPerTask` and at every tree size in `cuts`, so each run
    /// is covered by perfect subtrees that start at a multiple of their own size.
    struct TreeWork {
        var firstSequence: Int
        var gateway: [UInt8]
        /// Tree sizes (ascending) where a run must end.
        var cuts: [Int]
    }

    /// A run of frames checked by one task. In tree mode it carries the perfect subtrees (in order)
    /// covering its records, or nil when one of them needs the careful record-by-record path.
    struct Piece {
        var frames: Range<Int>
        var subtrees: [(size: Int, hash: TreeHash)]?
    }

    var firstSequence: Int
    var frames: [Frame]
    /// The leaf hash of each frame's record (with `hashLeaves`).
    var leaves: [TreeHash]
    /// Each record's `seq` and `gateway` (with `findFields`); nil where the fast reading failed.
    var fields: [FastRecordFields?]
    /// The runs the frames were checked in, in order, covering every good frame.
    var pieces: [Piece]
    /// Offset just past the last good frame.
    var end: Int
    /// Set when a frame is damaged: where, why, and how many non-zero bytes lie at or after it.
    var damage: (offset: Int, reason: String, trailingBytes: Int)?

    /// Frames per task when the frames are checked on several cores.
    static let framesPerTask = 2048

    /// Frame boundaries from `start` on: the first, serial part of a scan. It can run while the
    /// segment is being read, on each piece as it arrives (still in the CPU's cache), so that
    /// following the chain of lengths costs no trip to memory per frame.
    struct FrameIndex: Sendable {
        let start: Int
        /// Where the next frame would start.
        private(set) var offset: Int
        private(set) var frames: [Frame] = []

        init(start: Int) {
            self.start = start
            offset = start
        }

        /// Indexes the whole frames in `raw` past `offset`. Stops before a frame that is cut short
        /// or has a zero or impossible length: `scan` judges those once the segment is whole.
        mutating func advance(_ raw: UnsafeRawBufferPointer, segmentSize: Int) {
            if frames.capacity == 0 {
                // Records are a few hundred bytes: room for that many frames saves growing the array.
                frames.reserveCapacity(min(max(0, segmentSize - start) / 256, 1 << 18))
            }
            while offset + SegmentFormat.frameHeaderSize <= raw.count {
                let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                let end = offset + SegmentFormat.frameHeaderSize + length
                guard length > 0, length <= SegmentFormat.maximumPayload, end <= raw.count else { return }
                let crc = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                frames.append(Frame(offset: offset, length: length, crc: crc))
                offset = end
            }
        }
    }

    /// Scans segment bytes; throws only when the header itself is wrong. `index` is the frame index
    /// built while the bytes were read, if they were (it is finished here).
    static package func scan(
        _ bytes: [UInt8],
        name: String,
        from start: Int = SegmentFormat.headerSize,
        work: Work = Work(),
        index: FrameIndex? = nil
    ) throws(AuditLogError) -> SegmentScan {
        guard bytes.count >= SegmentFormat.headerSize, Array(bytes.prefix(8)) == SegmentFormat.magic else {
            throw AuditLogError(.corrupt, "segment \(name): not an audit segment (bad header)")
        }
        guard let first = SegmentFormat.firstSequence(bytes) else {
            throw AuditLogError(.corrupt, "segment \(name): its first sequence number is out of range (bad header)")
        }
        guard start >= SegmentFormat.headerSize, start <= bytes.count else {
            throw AuditLogError(.corrupt, "segment \(name): offset \(start) is outside the segment")
        }
        var scan = SegmentScan(firstSequence: first, frames: [], leaves: [], fields: [], pieces: [], end: start, damage: nil)
        var index = index.flatMap { $0.start == start ? $0 : nil } ?? FrameIndex(start: start)
        bytes.withUnsafeBytes { raw in
            index.advance(raw, segmentSize: raw.count)
            // Where indexing stopped short of the end, and why.
            let offset = index.offset
            guard offset + SegmentFormat.frameHeaderSize <= raw.count else {
                let trailing = offset < raw.count ? nonZero(bytes, from: offset) : 0
                if trailing > 0 { scan.damage = (offset, "a frame header is cut short", trailing) }
                return
            }
            let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let trailing = nonZero(bytes, from: offset)
            if length == 0 {
                if trailing > 0 { scan.damage = (offset, "a zero-length frame is followed by data", trailing) }
            } else {
                scan.damage = (offset, "a frame claims \(length) bytes that the segment does not hold", trailing)
            }
        }
        scan.frames = index.frames
        if let firstBad = scan.check(bytes, work: work) {
            let offset = scan.frames[firstBad].offset
            scan.damage = (offset, "the record fails its CRC-32C check (altered or damaged)", nonZero(bytes, from: offset))
            scan.frames.removeSubrange(firstBad...)
            if !scan.leaves.isEmpty { scan.leaves.removeSubrange(firstBad...) }
            if work.findFields { scan.fields.removeSubrange(firstBad...) }
            scan.pieces.removeAll { $0.frames.lowerBound >= firstBad }
            if let last = scan.pieces.indices.last, scan.pieces[last].frames.upperBound > firstBad {
                scan.pieces[last] = Piece(frames: scan.pieces[last].frames.lowerBound..<firstBad, subtrees: nil)
            }
        }
        if let last = scan.frames.last { scan.end = last.payloadEnd }
        return scan
    }

    /// Checks every frame's CRC and does `work`; returns the index of the first frame that fails.
    /// The frames are split into pieces, run as tasks on all cores.
    private mutating func check(_ bytes: [UInt8], work: Work) -> Int? {
        let count = frames.count
        let ranges = work.tree.map { Self.pieceRanges(count: count, tree: $0) } ?? Self.fixedRanges(count: count)
        let tasks = ranges.count
        var failures = [Int](repeating: Int.max, count: tasks)
        var leaves = [TreeHash](repeating: TreeHash.zero, count: work.hashLeaves ? count : 0)
        var fields = [FastRecordFields?](repeating: nil, count: work.findFields ? count : 0)
        var pieces = ranges.map { Piece(frames: $0, subtrees: nil) }
        let frames = self.frames
        bytes.withUnsafeBytes { raw in
            failures.withUnsafeMutableBufferPointer { failures in
                leaves.withUnsafeMutableBufferPointer { leaves in
                    fields.withUnsafeMutableBufferPointer { fields in
                        pieces.withUnsafeMutableBufferPointer { pieces in
                            let shared = TaskBuffers(segment: raw, failures: failures, leaves: leaves, fields: fields, pieces: pieces)
                            let run = { @Sendable (task: Int) in
                                var expected = true
                                let range = ranges[task]
                                // The piece's leaves, for its subtrees: a small buffer of the task's own.
                                withUnsafeTemporaryAllocation(of: TreeHash.self, capacity: work.tree == nil ? 0 : range.count) { own in
                                    func entry(_ index: Int) -> UnsafeRawBufferPointer {
                                        UnsafeRawBufferPointer(
                                            rebasing: shared.segment[frames[index].payloadStart..<frames[index].payloadEnd])
                                    }
                                    // CRCs three frames at a time (three chains side by side), then each frame's work.
                                    var sums: (UInt32, UInt32, UInt32) = (0, 0, 0)
                                    for index in range {
                                        let member = (index - range.lowerBound) % 3
                                        if member == 0 {
                                            sums =
                                                index + 2 < range.upperBound
                                                ? CRC32C.checksums(entry(index), entry(index + 1), entry(index + 2))
                                                : (
                                                    CRC32C.checksum(entry(index)),
                                                    index + 1 < range.upperBound ? CRC32C.checksum(entry(index + 1)) : 0, 0
                                                )
                                        }
                                        let frame = frames[index]
                                        let entry = entry(index)
                                        guard (member == 0 ? sums.0 : member == 1 ? sums.1 : sums.2) == frame.crc else {
                                            shared.failures[task] = index
                                            expected = false
                                            return
                                        }
                                        if let tree = work.tree {
                                            let leaf = TreeHash.leaf(entry)
                                            own.initializeElement(at: index - range.lowerBound, to: leaf)
                                            if work.hashLeaves { shared.leaves[index] = leaf }
                                            if expected {
                                                expected = FastRecordFields.matches(
                                                    entry, sequence: tree.firstSequence + index, gateway: tree.gateway)
                                            }
                                        } else if work.hashLeaves {
                                            shared.leaves[index] = TreeHash.leaf(entry)
                                        }
                                        if work.findFields { shared.fields[index] = FastRecordFields(entry) }
                                    }
                                    if let tree = work.tree, expected {
                                        shared.pieces[task].subtrees = Self.subtrees(own, start: tree.firstSequence + range.lowerBound)
                                    }
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
        }
        self.leaves = leaves
        self.fields = fields
        self.pieces = pieces
        return failures.min().flatMap { $0 == Int.max ? nil : $0 }
    }

    /// Runs of `framesPerTask` frames.
    static func fixedRanges(count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: framesPerTask).map { $0..<min(count, $0 + framesPerTask) }
    }

    /// Runs that end at every multiple of `framesPerTask` (a power of two) and at every cut, as tree
    /// sizes counted from `tree.firstSequence`.
    static func pieceRanges(count: Int, tree: TreeWork) -> [Range<Int>] {
        let first = tree.firstSequence
        let end = first + count
        var ranges: [Range<Int>] = []
        var cut = tree.cuts.startIndex
        var position = first
        while position < end {
            var next = min(end, (position / framesPerTask + 1) * framesPerTask)
            while cut < tree.cuts.endIndex, tree.cuts[cut] <= position { cut += 1 }
            if cut < tree.cuts.endIndex, tree.cuts[cut] < next { next = tree.cuts[cut] }
            ranges.append((position - first)..<(next - first))
            position = next
        }
        return ranges
    }

    /// The perfect subtrees covering `leaves`, whose first leaf has index `start` in the tree: each
    /// as large as possible while starting at a multiple of its size, so that they can be appended
    /// to the tree whole.
    static func subtrees(_ leaves: UnsafeMutableBufferPointer<TreeHash>, start: Int) -> [(size: Int, hash: TreeHash)] {
        var result: [(size: Int, hash: TreeHash)] = []
        var offset = 0
        var stack: [(size: Int, hash: TreeHash)] = []
        stack.reserveCapacity(Int.bitWidth)
        while offset < leaves.count {
            var size = 1
            while size * 2 <= leaves.count - offset, (start + offset) % (size * 2) == 0 { size *= 2 }
            stack.removeAll(keepingCapacity: true)
            for leaf in leaves[offset..<offset + size] {
                var node = (size: 1, hash: leaf)
                while let last = stack.last, last.size == node.size {
                    stack.removeLast()
                    node = (last.size * 2, TreeHash.node(last.hash, node.hash))
                }
                stack.append(node)
            }
            // `size` leaves, a power of two, fold into exactly one node.
            if let root = stack.first { result.append((size, root.hash)) }
            offset += size
        }
        return result
    }

    /// The buffers the tasks share. Safe to send: the segment is only read, and each task writes
    /// only its own slots of `failures` and `pieces` and the entries of its own frames.
    private struct TaskBuffers: @unchecked Sendable {
        var segment: UnsafeRawBufferPointer
        var failures: UnsafeMutableBufferPointer<Int>
        var leaves: UnsafeMutableBufferPointer<TreeHash>
        var fields: UnsafeMutableBufferPointer<FastRecordFields?>
        var pieces: UnsafeMutableBufferPointer<Piece>
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
