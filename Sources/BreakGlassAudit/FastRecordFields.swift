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
        // Keys are sorted, so `"gateway"` comes before `"seq"`, and `"v"` is usually the last key.
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}"),
            bytes.dropLast().suffix(Self.versionKey.count).elementsEqual(Self.versionKey)
                || Self.find(Self.versionKey, in: bytes, from: 0) != nil,
            let gatewayStart = Self.find(Self.gatewayKey, in: bytes, from: 0),
            let seqStart = Self.find(Self.sequenceKey, in: bytes, from: gatewayStart)
        else { return nil }
        var index = seqStart
        var value = 0
        var digits = 0
        while index < bytes.count, let digit = Self.digit(bytes[index]), digits < 18 {
            value = value * 10 + digit
            digits += 1
            index += 1
        }
        guard digits > 0, index < bytes.count, bytes[index] == UInt8(ascii: ",") || bytes[index] == UInt8(ascii: "}") else {
            return nil
        }
        guard let close = bytes[gatewayStart...].firstIndex(of: UInt8(ascii: "\"")),
            !bytes[gatewayStart..<close].contains(UInt8(ascii: "\\"))
        else { return nil }
        self.sequence = value
        self.gateway = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[gatewayStart..<close]), as: UTF8.self)
    }

    static let versionKey = Array("\"v\":1".utf8)
    static let sequenceKey = Array("\"seq\":".utf8)
    static let gatewayKey = Array("\"gateway\":\"".utf8)

    static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// The index just past the first occurrence of `needle` at or after `start`: libc's memchr
    /// (many bytes per step) finds each candidate first byte, memcmp the rest.
    static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer, from start: Int) -> Int? {
        needle.withUnsafeBytes { pattern -> Int? in
            guard let base = haystack.baseAddress, let patternBase = pattern.baseAddress, let first = pattern.first,
                haystack.count >= pattern.count
            else { return nil }
            let last = haystack.count - pattern.count
            var index = start
            while index <= last {
                guard let hit = memchr(base + index, Int32(first), last - index + 1) else { return nil }
                let position = UnsafeRawPointer(hit) - base
                if memcmp(base + position, patternBase, pattern.count) == 0 { return position + pattern.count }
                index = position + 1
            }
            return nil
        }
    }
}
