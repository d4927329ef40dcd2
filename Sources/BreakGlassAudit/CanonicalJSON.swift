#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes the canonical JSON of audit records without Foundation: keys in byte order, no spaces,
/// strings as UTF-8 with only `"`, `\` and control characters escaped.
enum CanonicalJSON {
    enum Value {
        case string(String)
        case integer(Int64)
        case strings([String])
        /// A time (seconds since 1970), written as `timestamp` writes it.
        case time(Double)
    }

    static func encode(_ object: [(String, Value)]) -> [UInt8] {
        encode(object, splitAt: nil).bytes
    }

    /// The object's canonical bytes, and where the key `split` (absent from `object`) would go in
    /// key order: `bytes[..<split]` is `{` and the members before it, `bytes[split...]` the members
    /// after it and `}`, with no comma between the two parts. When both parts hold members, joining
    /// them with a comma gives the object without that key, and putting `,"KEY":VALUE,` between them
    /// gives it with. One buffer, so that a record costs one allocation here.
    static func encode(_ object: [(String, Value)], splitAt split: String?) -> (bytes: [UInt8], split: Int) {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(UInt8(ascii: "{"))
        var splitOffset: Int?
        var first = true
        // Positions are sorted, not members: moving a member would copy, retain and release it.
        // Each key's first 8 bytes, read once as a number, decide most comparisons.
        var order = object.indices.map { (prefix: sortPrefix(object[$0].0), position: $0) }
        order.sort {
            $0.prefix != $1.prefix ? $0.prefix < $1.prefix : precedes(object[$0.position].0, object[$1.position].0)
        }
        for (_, position) in order {
            let (key, value) = object[position]
            if splitOffset == nil, let split, precedes(split, key) {
                splitOffset = out.count
                first = true
            }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            appendMember(key, value, to: &out)
        }
        let at = splitOffset ?? out.count
        out.append(UInt8(ascii: "}"))
        return (out, at)
    }

    /// The first 8 bytes of the key's UTF-8 form (zeros past its end) as a big-endian number:
    /// where two keys' numbers differ, they are in the keys' byte order.
    static func sortPrefix(_ key: String) -> UInt64 {
        var prefix: UInt64 = 0
        var count = 0
        for byte in key.utf8.prefix(8) {
            prefix = prefix << 8 | UInt64(byte)
            count += 1
        }
        return count == 8 ? prefix : prefix << (8 * (8 - count))
    }

    /// Byte order of the UTF-8 forms.
    static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { left in
            b.withUTF8 { right in
                let common = min(left.count, right.count)
                if common > 0, let l = left.baseAddress, let r = right.baseAddress {
                    let order = memcmp(l, r, common)
                    if order != 0 { return order < 0 }
                }
                return left.count < right.count
            }
        }
    }

    private static func appendMember(_ key: String, _ value: Value, to out: inout [UInt8]) {
        appendString(key, to: &out)
        out.append(UInt8(ascii: ":"))
        switch value {
        case .string(let text):
            appendString(text, to: &out)
        case .integer(let number):
            out.append(contentsOf: String(number).utf8)
        case .strings(let list):
            out.append(UInt8(ascii: "["))
            for (position, item) in list.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendString(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .time(let seconds):
            out.append(UInt8(ascii: "\""))
            appendTimestamp(seconds, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them whole. The check looks at every byte without
        // branching on each, which the compiler turns into vector code.
        var text = text
        let plain = text.withUTF8 { bytes in
            var special: UInt8 = 0
            for byte in bytes {
                special |=
                    (byte < 0x20 ? 1 : 0) | (byte == 0x7F ? 1 : 0) | (byte == UInt8(ascii: "\"") ? 1 : 0)
                    | (byte == UInt8(ascii: "\\") ? 1 : 0)
            }
            if special == 0 { out.append(contentsOf: bytes) }
            return special == 0
        }
        if plain {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                ])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `2026-11-27T08:35:41.123Z` for seconds since 1970 (UTC, milliseconds).
    static func timestamp(_ secondsSince1970: Double) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        appendTimestamp(secondsSince1970, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the `timestamp` of a time; written digit by digit, in place, as it runs for every
    /// audit record.
    static func appendTimestamp(_ secondsSince1970: Double, to out: inout [UInt8]) {
        let milliseconds = Int64((secondsSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else {
            out.append(contentsOf: "1970-01-01T00:00:00.000Z".utf8)
            return
        }
        guard (0...9999).contains(parts.tm_year + 1900) else {
            func pad(_ value: Int32, _ width: Int) -> String {
                let digits = String(value)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
            let text =
                pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1, 2) + "-" + pad(parts.tm_mday, 2) + "T" + pad(parts.tm_hour, 2)
                + ":" + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2) + "." + pad(Int32(fraction), 3) + "Z"
            out.append(contentsOf: text.utf8)
            return
        }
        let start = out.count
        out.append(contentsOf: "0000-00-00T00:00:00.000Z".utf8)
        func put(_ value: Int, at end: Int, width: Int) {
            var value = value
            for position in stride(from: start + end, to: start + end - width, by: -1) {
                out[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 3, width: 4)
        put(Int(parts.tm_mon) + 1, at: 6, width: 2)
        put(Int(parts.tm_mday), at: 9, width: 2)
        put(Int(parts.tm_hour), at: 12, width: 2)
        put(Int(parts.tm_min), at: 15, width: 2)
        put(Int(parts.tm_sec), at: 18, width: 2)
        put(fraction, at: 22, width: 3)
    }
}
