/// The on-disk layout of audit segments.
///
/// A segment file starts with a 16-byte header: the magic `BGAUDIT1` and the big-endian sequence
/// number of its first record. Frames follow: a big-endian u32 payload length (1…`maximumPayload`),
/// a big-endian u32 CRC-32C of the payload, and the payload (one canonical JSON record). The rest of
/// a preallocated segment is zeros; a zero length marks the end of the data.
public enum SegmentFormat {
    /// The magic bytes that start every segment.
    public static let magic: [UInt8] = Array("BGAUDIT1".utf8)
    /// Size of a segment header in bytes.
    public static let headerSize = 16
    /// Size of a frame header (length and CRC) in bytes.
    public static let frameHeaderSize = 8
    /// Largest payload a frame may carry, in bytes.
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

    /// A segment header for a segment whose first record has sequence number `firstSequence`.
    public static func header(firstSequence: Int) -> [UInt8] {
        magic + bigEndian(UInt64(firstSequence))
    }

    /// A frame (length, CRC-32C, payload) for `payload`.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        appendFrame(payload, to: &out)
        return out
    }

    /// Appends a frame (length, CRC-32C, payload) to a buffer without intermediate arrays.
    public static func appendFrame(_ payload: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + frameHeaderSize + payload.count)
        appendFrame(to: &out) { $0.append(contentsOf: payload) }
    }

    /// Appends a frame whose payload `body` appends in place, and returns where the payload lies
    /// in `out` (the length and CRC-32C are filled in after it).
    @discardableResult
    package static func appendFrame(to out: inout [UInt8], _ body: (inout [UInt8]) -> Void) -> Range<Int> {
        let header = out.count
        out.append(contentsOf: repeatElement(0, count: frameHeaderSize))
        body(&out)
        let payload = header + frameHeaderSize..<out.count
        out.withUnsafeMutableBytes { raw in
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[payload]))
            raw.storeBytes(of: UInt32(payload.count).bigEndian, toByteOffset: header, as: UInt32.self)
            raw.storeBytes(of: crc.bigEndian, toByteOffset: header + 4, as: UInt32.self)
        }
        return payload
    }

    /// The first sequence number in a header's bytes 8..<16 (the caller checks there are 16), or nil
    /// past 2^62: no log reaches it, and sequence arithmetic stays far from overflow below it.
    static func firstSequence(_ header: some Collection<UInt8>) -> Int? {
        let value = readBigEndian(ArraySlice(header.dropFirst(8).prefix(8)), as: UInt64.self)
        return value < 1 << 62 ? Int(value) : nil
    }

    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    static func readBigEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, as type: T.Type) -> T {
        bytes.reduce(T.zero) { ($0 << 8) | T($1) }
    }
}
