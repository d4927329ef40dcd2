import BreakGlassAuditFormat
import BreakGlassAuditLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Record times are computed from the calendar, not by the C library: they must match what
/// `gmtime_r` gives, to the millisecond, across the years a record can hold.
@Suite struct RecordTimeTests {
    /// The C library's form of a time: UTC, milliseconds rounded down.
    static func reference(_ seconds: Double) -> String {
        let milliseconds = Int64((seconds * 1000).rounded(.down))
        var whole = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = Int(milliseconds - Int64(whole) * 1000)
        var parts = tm()
        guard gmtime_r(&whole, &parts) != nil else { return "gmtime_r failed" }
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
            parts.tm_min, parts.tm_sec, fraction)
    }

    @Test func timesMatchTheCLibraryFromYear1To9999() {
        // Leap days and the days around them (2000 is a leap year, 1900 and 2100 are not), the
        // epoch and a millisecond before it, and the first and last instants of the range.
        var times: [Double] = [
            0, -0.001, -1, 0.999, 951_782_400, 951_868_799.999, 951_868_800, -2_203_977_600, -2_203_891_200, 4_107_456_000,
            4_107_542_400, -62_135_596_800, 253_402_300_799.999, 1_795_000_000.5, 68_256_000,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            times.append(Double.random(in: -62_135_596_800..<253_402_300_800, using: &generator))
        }
        for _ in 0..<100_000 {
            // Around now, with milliseconds.
            times.append(Double(Int64.random(in: 0..<4_000_000_000_000, using: &generator)) / 1000)
        }
        var mismatches: [String] = []
        for time in times {
            // Both from the date's own number of seconds (a `Date` counts from 2001, so that number
            // can differ from `time` in the last bits).
            let date = Date(timeIntervalSince1970: time)
            let ours = AuditRecord.formatTime(date)
            let theirs = Self.reference(date.timeIntervalSince1970)
            if ours != theirs && mismatches.count < 5 { mismatches.append("\(time): \(ours) vs \(theirs)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
    }

    @Test func timesOutsideTheCalendarAreWrittenWithoutFailing() {
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00.000Z")
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: .infinity)) == "1970-01-01T00:00:00.000Z")
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: -1e300)) == "1970-01-01T00:00:00.000Z")
        // Year 0 and year 10000 go through the C library, as before.
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: -62_167_219_200)) == "0000-01-01T00:00:00.000Z")
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: 253_402_300_800)) == "10000-01-01T00:00:00.000Z")
        #expect(AuditRecord.formatTime(Date(timeIntervalSince1970: 1e15)) == "31690708-07-05T01:46:40.000Z")
    }
}
