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

    init?(_ bytes: ArraySlice<UInt8>) {
        // Keys are sorted, so `"gateway"` comes before `"seq"`, and `"v"` is usually the last key.
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}"),
            bytes.suffix(Self.versionKey.count + 1).dropLast().elementsEqual(Self.versionKey)
                || Self.find(Self.versionKey, in: bytes) != nil,
            let gatewayStart = Self.find(Self.gatewayKey, in: bytes),
            let seqStart = Self.find(Self.sequenceKey, in: bytes[gatewayStart...])
        else { return nil }
        var index = seqStart
        var value = 0
        var digits = 0
        while index < bytes.endIndex, let digit = Self.digit(bytes[index]), digits < 18 {
            value = value * 10 + digit
            digits += 1
            index += 1
        }
        guard digits > 0, index < bytes.endIndex, bytes[index] == UInt8(ascii: ",") || bytes[index] == UInt8(ascii: "}") else {
            return nil
        }
        guard let close = bytes[gatewayStart...].firstIndex(of: UInt8(ascii: "\"")),
            !bytes[gatewayStart..<close].contains(UInt8(ascii: "\\"))
        else { return nil }
        self.sequence = value
        self.gateway = String(decoding: bytes[gatewayStart..<close], as: UTF8.self)
    }

    static let versionKey = Array("\"v\":1".utf8)
    static let sequenceKey = Array("\"seq\":".utf8)
    static let gatewayKey = Array("\"gateway\":\"".utf8)

    static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// The index just past the first occurrence of `needle`.
    static func find(_ needle: [UInt8], in bytes: ArraySlice<UInt8>) -> Int? {
        bytes.withUnsafeBufferPointer { haystack -> Int? in
            needle.withUnsafeBufferPointer { pattern -> Int? in
                guard let first = pattern.first, haystack.count >= pattern.count else { return nil }
                var index = 0
                let last = haystack.count - pattern.count
                outer: while index <= last {
                    if haystack[index] == first {
                        for offset in 1..<pattern.count where haystack[index + offset] != pattern[offset] {
                            index += 1
                            continue outer
                        }
                        return bytes.startIndex + index + pattern.count
                    }
                    index += 1
                }
                return nil
            }
        }
    }
}
