#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `seq` and `gateway` of a canonical record, found without decoding the whole JSON.
///
/// In canonical records every quote inside a string value is escaped, so the bytes `"seq":` and
/// `"gateway":"` can only be keys. Anything unexpected gives nil, and the caller decodes fully.
struct FastRecordFields: Equatable {
    var sequence: Int
    var gateway: String

    init(sequence: Int, gateway: String) {
        self.sequence = sequence
        self.gateway = gateway
    }

    init?(_ bytes: UnsafeRawBufferPointer) {
        guard let found = Self.locate(bytes),
            let close = bytes[found.gatewayStart...].firstIndex(of: UInt8(ascii: "\"")),
            !bytes[found.gatewayStart..<close].contains(UInt8(ascii: "\\"))
        else { return nil }
        self.sequence = found.sequence
        self.gateway = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[found.gatewayStart..<close]), as: UTF8.self)
    }

    /// Whether the record's `seq` is `sequence` and its `gateway` is exactly `gateway` (given as it
    /// appears in JSON, without escapes), without making strings. False also when this fast
    /// reading cannot tell; then the caller reads the record the careful way.
    static func matches(_ bytes: UnsafeRawBufferPointer, sequence: Int, gateway: [UInt8]) -> Bool {
        guard let found = locate(bytes), found.sequence == sequence,
            found.gatewayStart + gateway.count < bytes.count,
            bytes[found.gatewayStart + gateway.count] == UInt8(ascii: "\""),
            let base = bytes.baseAddress
        else { return false }
        return gateway.withUnsafeBytes { expected in
            guard let expectedBase = expected.baseAddress else { return true }
            return memcmp(base + found.gatewayStart, expectedBase, expected.count) == 0
        }
    }

    /// The value of `seq` and where the value of `gateway` starts; nil where anything is unexpected.
    private static func locate(_ bytes: UnsafeRawBufferPointer) -> (sequence: Int, gatewayStart: Int)? {
        // Keys are sorted, so `"gateway"` comes before `"seq"`, and `"v"` is usually the last key.
        guard bytes.count > versionKey.utf8CodeUnitCount + 1, bytes[0] == UInt8(ascii: "{"), bytes[bytes.count - 1] == UInt8(ascii: "}"),
            endsWithVersion(bytes) || find(versionKey, in: bytes, from: 0) != nil,
            let gatewayStart = find(gatewayKey, anchor: 7, in: bytes, from: 0),
            let seqStart = find(sequenceKey, anchor: 3, in: bytes, from: gatewayStart)
        else { return nil }
        var index = seqStart
        var value = 0
        var digits = 0
        while index < bytes.count, let digit = digit(bytes[index]), digits < 18 {
            value = value * 10 + digit
            digits += 1
            index += 1
        }
        guard digits > 0, index < bytes.count, bytes[index] == UInt8(ascii: ",") || bytes[index] == UInt8(ascii: "}") else {
            return nil
        }
        return (value, gatewayStart)
    }

    /// Whether `"v":1` comes just before the closing brace.
    private static func endsWithVersion(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let key = versionKey
        return memcmp(base + bytes.count - 1 - key.utf8CodeUnitCount, key.utf8Start, key.utf8CodeUnitCount) == 0
    }

    // Static strings: their bytes are in the binary, so the hot loops pay no lazy initialisation.
    static let versionKey: StaticString = "\"v\":1"
    /// `q`, at 3, is the anchor `find` looks for.
    static let sequenceKey: StaticString = "\"seq\":"
    /// `y`, at 7, is the anchor `find` looks for.
    static let gatewayKey: StaticString = "\"gateway\":\""

    static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// The index just past the first occurrence of `needle` at or after `start`. libc's memchr
    /// (many bytes per step) finds each place where the needle's byte at `anchor` could sit (a byte
    /// that is rare in records: quotes are everywhere); the rest is compared here.
    static func find(_ needle: StaticString, anchor: Int = 0, in haystack: UnsafeRawBufferPointer, from start: Int) -> Int? {
        let pattern = UnsafeRawBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
        guard let base = haystack.baseAddress, anchor < pattern.count, haystack.count >= pattern.count else { return nil }
        let last = haystack.count - pattern.count
        var index = start
        while index <= last {
            guard let hit = memchr(base + index + anchor, Int32(pattern[anchor]), last - index + 1) else { return nil }
            let position = UnsafeRawPointer(hit) - base - anchor
            var matched = 0
            while matched < pattern.count, haystack[position + matched] == pattern[matched] { matched += 1 }
            if matched == pattern.count { return position + pattern.count }
            index = position + 1
        }
        return nil
    }
}
