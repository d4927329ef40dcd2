import BreakGlassCore
import Foundation

/// One event as the log stores it: canonical JSON (sorted keys, no spaces), version 1.
///
/// `{"event":"grant.issued","gateway":"demo-gateway","seq":12,"time":"2026-11-27T08:35:41.123Z","v":1,...fields}`
/// The bytes of a record are the Merkle leaf entry.
public struct AuditRecord: Sendable, Equatable {
    /// The record format version written as `v`.
    public static let version = 1
    /// Largest encoded record accepted.
    public static let maximumSize = 64 * 1024

    /// The record's sequence number (`seq`), from 0.
    public var sequence: Int
    /// The gateway that wrote the record (`gateway`).
    public var gateway: String
    /// The event recorded.
    public var event: AuditEvent

    /// A record of `event` with sequence number `sequence`, written by `gateway`.
    public init(sequence: Int, gateway: String, event: AuditEvent) {
        self.sequence = sequence
        self.gateway = gateway
        self.event = event
    }

    /// Whether a field's key is one the record itself writes (`v`, `seq`, `time`, `event`,
    /// `gateway`): a few short comparisons, cheaper than hashing the key on every record.
    static func isReserved(_ key: String) -> Bool {
        switch key.utf8.count {
        case 1: key == "v"
        case 3: key == "seq"
        case 4: key == "time"
        case 5: key == "event"
        case 7: key == "gateway"
        default: false
        }
    }

    /// The canonical bytes.
    public func encoded() throws(AuditLogError) -> [UInt8] {
        try Self.prepare(gateway: gateway, event: event).bytes(sequence: sequence)
    }

    /// A record encoded but for its sequence number, which the writer alone knows: the costly part
    /// of encoding, done by whoever appends, in parallel.
    package struct Prepared: Sendable {
        /// `{` and the members that sort before `seq`, then (from `split`) those after it and `}`.
        var encoded: [UInt8]
        var split: Int

        /// Most bytes `seq` adds: `,"seq":`, up to 19 digits and a comma.
        static let sequenceRoom = 28

        /// The most bytes the record takes with any sequence number.
        package var maximumCount: Int { encoded.count + Self.sequenceRoom }

        /// The record's canonical bytes with `seq` in its place.
        package func bytes(sequence: Int) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(maximumCount)
            append(sequence: sequence, to: &out)
            return out
        }

        /// Appends the record's canonical bytes with `seq` in its place.
        package func append(sequence: Int, to out: inout [UInt8]) {
            out.append(contentsOf: encoded[..<split])
            out.append(contentsOf: ",\"seq\":".utf8)
            CanonicalJSON.appendInteger(Int64(sequence), to: &out)
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: encoded[split...])
        }
    }

    /// Encodes the event's record without its sequence number; too large a record is refused here.
    static package func prepare(gateway: String, event: AuditEvent) throws(AuditLogError) -> Prepared {
        // "event" and "gateway" sort before "seq", "time" and "v" after: both parts hold members.
        let (encoded, split) = CanonicalJSON.encodeRecord(gateway: gateway, event: event, version: Self.version)
        guard encoded.count + Prepared.sequenceRoom <= Self.maximumSize else {
            throw AuditLogError(.recordTooLarge, "an audit record is larger than \(Self.maximumSize) bytes")
        }
        return Prepared(encoded: encoded, split: split)
    }

    /// Decodes canonical bytes; fields come back as strings, integers or string lists.
    public init(decoding bytes: some DataProtocol) throws(AuditLogError) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let version = object["v"] as? Int, version == Self.version,
            let sequence = object["seq"] as? Int, let gateway = object["gateway"] as? String,
            let kind = object["event"] as? String, let timeText = object["time"] as? String,
            let time = Self.parseTime(timeText)
        else { throw AuditLogError(.malformedRecord, "a record is not a version \(Self.version) audit event") }
        var fields: [String: AuditValue] = [:]
        for (key, value) in object where !Self.isReserved(key) {
            switch value {
            case let text as String: fields[key] = .string(text)
            case let number as Int: fields[key] = .integer(Int64(number))
            case let list as [String]: fields[key] = .strings(list)
            default: throw AuditLogError(.malformedRecord, "field \(key) of record \(sequence) has an unsupported type")
            }
        }
        self.init(
            sequence: sequence, gateway: gateway, event: AuditEvent(kind: AuditEvent.Kind(rawValue: kind), time: time, fields: fields))
    }

    /// ISO 8601 with milliseconds, UTC: how records write times.
    public static func formatTime(_ date: Date) -> String {
        CanonicalJSON.timestamp(date.timeIntervalSince1970)
    }

    /// Parses a record time.
    public static func parseTime(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }
}
