import BreakGlassCore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes the canonical JSON of audit records by hand: keys in byte order, no spaces, strings as
/// UTF-8 with only `"`, `\` and control characters escaped.
enum CanonicalJSON {
    /// Where a field sits in the event's dictionary, and the first 8 bytes of its key (`sortPrefix`).
    private typealias FieldPosition = (prefix: UInt64, index: Dictionary<String, AuditValue>.Index)

    /// An audit record's canonical bytes but for `seq`, and where `seq` goes: `bytes[..<split]` is
    /// `{` and the members before it, `bytes[split...]` the members after it and `}`, with no comma
    /// between the two parts; putting `,"seq":N,` between them gives the record. The record's own
    /// members (`event`, `gateway`, `time`, `v`) are written here; fields with those names or `seq`
    /// are left out. One buffer, and no copies of the fields, as it runs for every record.
    static func encodeRecord(gateway: String, event: AuditEvent, version: Int) -> (bytes: [UInt8], split: Int) {
        let fields = event.fields
        return withUnsafeTemporaryAllocation(of: FieldPosition.self, capacity: fields.count) { order in
            // Field positions in key order (insertion sort: records hold a few fields, and each
            // key's first 8 bytes, read once as a number, decide most comparisons). The buffer
            // starts uninitialized: elements are initialized and moved, never assigned, and the
            // first `count` are deinitialized at the end (a dictionary index is not a plain value
            // everywhere).
            var count = 0
            defer { _ = UnsafeMutableBufferPointer(rebasing: order[..<count]).deinitialize() }
            var index = fields.startIndex
            while index != fields.endIndex {
                let key = fields[index].key
                if !AuditRecord.isReserved(key) {
                    let entry = (prefix: sortPrefix(key), index: index)
                    var slot = count
                    while slot > 0, precedes(entry, order[slot - 1], in: fields) {
                        order.initializeElement(at: slot, to: order.moveElement(from: slot - 1))
                        slot -= 1
                    }
                    order.initializeElement(at: slot, to: entry)
                    count += 1
                }
                fields.formIndex(after: &index)
            }
            var writer = RecordWriter(gateway: gateway, event: event, version: version)
            for position in 0..<count {
                let (key, value) = fields[order[position].index]
                writer.appendRecordMembers(before: key)
                writer.startMember()
                appendString(key, to: &writer.out)
                writer.out.append(UInt8(ascii: ":"))
                appendValue(value, to: &writer.out)
            }
            writer.appendRecordMembers(before: nil)
            writer.out.append(UInt8(ascii: "}"))
            return (writer.out, writer.split)
        }
    }

    /// The record's own members (raw value: the key), declared in the byte order of their keys.
    private enum RecordMember: String, CaseIterable {
        case event, gateway, seq, time, v

        /// `allCases` made once (the synthesized one builds an array on every call).
        static let inOrder = allCases
    }

    /// Writes a record's members in order: its own (with the split where `seq` goes) as the
    /// fields' keys pass them, and the fields between them.
    private struct RecordWriter {
        let gateway: String
        let event: AuditEvent
        let version: Int
        var out: [UInt8] = []
        var split = 0
        /// Where the next `RecordMember` to write is in `inOrder`.
        var next = 0
        var needsComma = false

        init(gateway: String, event: AuditEvent, version: Int) {
            self.gateway = gateway
            self.event = event
            self.version = version
            out.reserveCapacity(256)
            out.append(UInt8(ascii: "{"))
        }

        /// A comma unless the member is the first of its part.
        mutating func startMember() {
            if needsComma { out.append(UInt8(ascii: ",")) }
            needsComma = true
        }

        /// The record's own members that sort before `key` (all that are left when nil).
        mutating func appendRecordMembers(before key: String?) {
            while next < RecordMember.inOrder.count {
                let member = RecordMember.inOrder[next]
                if let key, !CanonicalJSON.precedes(member.rawValue, key) { return }
                next += 1
                if member == .seq {
                    split = out.count
                    needsComma = false
                    continue
                }
                startMember()
                switch member {
                case .event: CanonicalJSON.appendKeyedString("event", event.kind.rawValue, to: &out)
                case .gateway: CanonicalJSON.appendKeyedString("gateway", gateway, to: &out)
                case .seq: break
                case .time:
                    out.append(contentsOf: "\"time\":\"".utf8)
                    CanonicalJSON.appendTimestamp(event.time.timeIntervalSince1970, to: &out)
                    out.append(UInt8(ascii: "\""))
                case .v:
                    out.append(contentsOf: "\"v\":".utf8)
                    CanonicalJSON.appendInteger(Int64(version), to: &out)
                }
            }
        }
    }

    private static func precedes(_ a: FieldPosition, _ b: FieldPosition, in fields: [String: AuditValue]) -> Bool {
        a.prefix != b.prefix ? a.prefix < b.prefix : precedes(fields[a.index].key, fields[b.index].key)
    }

    fileprivate static func appendKeyedString(_ key: StaticString, _ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        out.append(contentsOf: "\":".utf8)
        appendString(value, to: &out)
    }

    private static func appendValue(_ value: AuditValue, to out: inout [UInt8]) {
        switch value {
        case .string(let text):
            appendString(text, to: &out)
        case .integer(let number):
            appendInteger(number, to: &out)
        case .strings(let list):
            out.append(UInt8(ascii: "["))
            for (position, item) in list.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                appendString(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .time(let date):
            out.append(UInt8(ascii: "\""))
            appendTimestamp(date.timeIntervalSince1970, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    /// Decimal digits, with a minus sign when negative.
    static func appendInteger(_ number: Int64, to out: inout [UInt8]) {
        // 19 digits and a sign at most (Int64.min).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = number.magnitude
            var start = digits.count
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if number < 0 {
                start -= 1
                digits[start] = UInt8(ascii: "-")
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// The first 8 bytes of the key's UTF-8 form (zeros past its end) as a big-endian number:
    /// where two keys' numbers differ, they are in the keys' byte order.
    static func sortPrefix(_ key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { bytes in
            var prefix: UInt64 = 0
            for index in 0..<8 {
                prefix = prefix << 8 | (index < bytes.count ? UInt64(bytes[index]) : 0)
            }
            return prefix
        }
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

    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them whole. The check looks at every byte without
        // branching on each, which the compiler turns into vector code.
        let plain =
            text.utf8.withContiguousStorageIfAvailable { bytes in
                var special: UInt8 = 0
                for byte in bytes {
                    special |=
                        (byte < 0x20 ? 1 : 0) | (byte == 0x7F ? 1 : 0) | (byte == UInt8(ascii: "\"") ? 1 : 0)
                        | (byte == UInt8(ascii: "\\") ? 1 : 0)
                }
                if special == 0 { out.append(contentsOf: bytes) }
                return special == 0
            } ?? false
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
    /// audit record. Years 1 to 9999 are computed here (glibc's `gmtime_r` takes its time zone lock
    /// even for UTC, which appending threads would contend for); other years go through `gmtime_r`.
    /// A time that is not a number, or too far off to count in milliseconds, is written as the
    /// epoch, as is one `gmtime_r` cannot convert.
    static func appendTimestamp(_ secondsSince1970: Double, to out: inout [UInt8]) {
        // Milliseconds must fit an Int64 (9.2e18).
        guard secondsSince1970.isFinite, abs(secondsSince1970) < 9e15 else {
            out.append(contentsOf: "1970-01-01T00:00:00.000Z".utf8)
            return
        }
        let milliseconds = Int64((secondsSince1970 * 1000).rounded(.down))
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let fraction = Int(milliseconds - seconds * 1000)
        // 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
        guard (-62_135_596_800..<253_402_300_800).contains(seconds) else {
            appendTimestampFromLibC(seconds, fraction: fraction, to: &out)
            return
        }
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        // Days since 1970 to a proleptic Gregorian date, in 400-year eras that start on March 1
        // (so that the leap day ends each year).
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        appendDigits(
            year: year, month: month, day: day, hour: secondOfDay / 3600, minute: secondOfDay / 60 % 60, second: secondOfDay % 60,
            fraction: fraction, to: &out)
    }

    /// Times outside years 1 to 9999, through the C library (as the four-digit form cannot hold them).
    private static func appendTimestampFromLibC(_ seconds: Int64, fraction: Int, to out: inout [UInt8]) {
        var time = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else {
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
        appendDigits(
            year: Int(parts.tm_year) + 1900, month: Int(parts.tm_mon) + 1, day: Int(parts.tm_mday), hour: Int(parts.tm_hour),
            minute: Int(parts.tm_min), second: Int(parts.tm_sec), fraction: fraction, to: &out)
    }

    /// `YYYY-MM-DDThh:mm:ss.fffZ`, for a year of 0 to 9999.
    private static func appendDigits(
        year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, fraction: Int, to out: inout [UInt8]
    ) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { text in
            func put(_ value: Int, at end: Int, width: Int, then separator: UInt8) {
                var value = value
                for position in stride(from: end, to: end - width, by: -1) {
                    text[position] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                text[end + 1] = separator
            }
            put(year, at: 3, width: 4, then: UInt8(ascii: "-"))
            put(month, at: 6, width: 2, then: UInt8(ascii: "-"))
            put(day, at: 9, width: 2, then: UInt8(ascii: "T"))
            put(hour, at: 12, width: 2, then: UInt8(ascii: ":"))
            put(minute, at: 15, width: 2, then: UInt8(ascii: ":"))
            put(second, at: 18, width: 2, then: UInt8(ascii: "."))
            put(fraction, at: 22, width: 3, then: UInt8(ascii: "Z"))
            out.append(contentsOf: UnsafeBufferPointer(text))
        }
    }
}
