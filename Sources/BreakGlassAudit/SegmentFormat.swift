/// The on-disk layout of audit segments.
///
/// A segment file starts with a 16-byte header: the magic `BGAUDIT1` and the big-endian sequence
/// number of its first record. Frames follow: a big-endian u32 payload length (1…`maximumPayload`),
/// a big-endian u32 CRC-32C of the payload, and the payload (one canonical JSON record). The rest of
/// a preallocated segment is zeros; a zero length marks the end of the data.
public enum SegmentFormat {
    public static let magic: [UInt8] = Array("BGAUDIT1".utf8)
    public static let headerSize = 16
    public static let frameHeaderSize = 8
    public static let maximumPayload = AuditRecord.maximumSize

    /// `00000001.seg`
    public static func fileName(index: Int) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".seg"
    }

    /// The segment index of a file name, or nil.
    public static func index(of name: String) -> Int? {
        guard name.hasSuffix(".seg"), name.count == 12 else { return nil }
        return Int(name.dropLast(4))
    }

    public static func header(firstSequence: Int) -> [UInt8] {
        magic + bigEndian(UInt64(firstSequence))
    }

    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        appendFrame(payload, to: &out)
        return out
    }

    /// Appends a frame (length, CRC-32C, payload) to a buffer without intermediate arrays.
    public static func appendFrame(_ payload: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + frameHeaderSize + payload.count)
        let length = UInt32(payload.count).bigEndian
        let crc = CRC32C.checksum(payload).bigEndian
        withUnsafeBytes(of: length) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: crc) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
    }

    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    static func readBigEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, as type: T.Type) -> T {
        bytes.reduce(T.zero) { ($0 << 8) | T($1) }
    }
}

/// What scanning one segment found.
struct SegmentScan {
    struct Frame {
        var offset: Int
        var payload: ArraySlice<UInt8>
    }

    var firstSequence: Int
    var frames: [Frame]
    /// Offset just past the last good frame.
    var end: Int
    /// Set when a frame is damaged: where, why, and how many non-zero bytes lie at or after it.
    var damage: (offset: Int, reason: String, trailingBytes: Int)?

    /// Scans segment bytes; throws only when the header itself is wrong.
    static func scan(_ bytes: [UInt8], name: String, from start: Int = SegmentFormat.headerSize) throws(AuditLogError) -> SegmentScan {
        guard bytes.count >= SegmentFormat.headerSize, Array(bytes.prefix(8)) == SegmentFormat.magic else {
            throw AuditLogError(.corrupt, "segment \(name): not an audit segment (bad header)")
        }
        let first = Int(SegmentFormat.readBigEndian(bytes[8..<16], as: UInt64.self))
        guard start >= SegmentFormat.headerSize, start <= bytes.count else {
            throw AuditLogError(.corrupt, "segment \(name): offset \(start) is outside the segment")
        }
        var scan = SegmentScan(firstSequence: first, frames: [], end: start, damage: nil)
        var offset = start
        while offset + SegmentFormat.frameHeaderSize <= bytes.count {
            let length = Int(SegmentFormat.readBigEndian(bytes[offset..<offset + 4], as: UInt32.self))
            if length == 0 {
                let trailing = nonZero(bytes, from: offset)
                if trailing > 0 { scan.damage = (offset, "a zero-length frame is followed by data", trailing) }
                return scan
            }
            let crc = SegmentFormat.readBigEndian(bytes[offset + 4..<offset + 8], as: UInt32.self)
            let start = offset + SegmentFormat.frameHeaderSize
            guard length <= SegmentFormat.maximumPayload, start + length <= bytes.count else {
                scan.damage = (offset, "a frame claims \(length) bytes that the segment does not hold", nonZero(bytes, from: offset))
                return scan
            }
            let payload = bytes[start..<start + length]
            guard CRC32C.checksum(payload) == crc else {
                scan.damage = (offset, "the record fails its CRC-32C check (altered or damaged)", nonZero(bytes, from: offset))
                return scan
            }
            scan.frames.append(Frame(offset: offset, payload: payload))
            offset = start + length
            scan.end = offset
        }
        if offset < bytes.count, nonZero(bytes, from: offset) > 0 {
            scan.damage = (offset, "a frame header is cut short", nonZero(bytes, from: offset))
        }
        return scan
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
