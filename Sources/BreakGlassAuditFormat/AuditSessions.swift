import BreakGlassCore
import Foundation

/// One emergency session as the audit log tells it.
public struct SessionSummary: Sendable, Equatable, Codable {
    /// The session id.
    public var session: String
    /// The user the grant was issued to.
    public var user: String
    /// The pathway granted.
    public var pathway: String
    /// The reason the user gave.
    public var reason: String
    /// The ticket the user named; nil when none.
    public var ticket: String?
    /// The client address the grant was requested from; nil when not recorded.
    public var source: String?
    /// When the grant was issued.
    public var startedAt: Date
    /// When the grant was to expire; nil when not recorded.
    public var expiresAt: Date?
    /// When and how it ended: `released`, `revoked`, `expired`; nil while no end event exists.
    public var endedAt: Date?
    /// How it ended: `released`, `revoked` or `expired`; nil while no end event exists.
    public var ending: String?
    /// Proxied requests recorded for the session.
    public var requests: Int
    /// Tunnels opened in the session.
    public var tunnels: Int
    /// `probe` for the gateway's self-test, `drill` for a rehearsal; nil for an ordinary grant.
    public var tag: String? = nil

    enum CodingKeys: String, CodingKey {
        case session, user, pathway, reason, ticket, source, ending, requests, tunnels, tag
        case startedAt = "started_at"
        case expiresAt = "expires_at"
        case endedAt = "ended_at"
    }
}

/// Groups audit records into sessions.
public enum AuditSessions {
    static let endings: [AuditEvent.Kind: String] = [.grantReleased: "released", .grantRevoked: "revoked", .grantExpired: "expired"]

    /// The sessions whose `grant.issued` record is among `records`, in log order, with their ends and counts.
    public static func summarize(_ records: [AuditRecord]) -> [SessionSummary] {
        var order: [String] = []
        var sessions: [String: SessionSummary] = [:]
        for record in records {
            let event = record.event
            guard case .string(let id) = event.fields["session"] else { continue }
            if event.kind == .grantIssued {
                order.append(id)
                sessions[id] = SessionSummary(
                    session: id,
                    user: text(event, "user") ?? "?",
                    pathway: text(event, "pathway") ?? "?",
                    reason: text(event, "reason") ?? "",
                    ticket: text(event, "ticket"),
                    source: text(event, "source"),
                    startedAt: event.time,
                    expiresAt: text(event, "expires_at").flatMap(AuditRecord.parseTime),
                    endedAt: nil,
                    ending: nil,
                    requests: 0,
                    tunnels: 0,
                    tag: text(event, "tag")
                )
            } else if let ending = endings[event.kind], sessions[id]?.endedAt == nil {
                sessions[id]?.endedAt = event.time
                sessions[id]?.ending = ending
            } else if event.kind == .request {
                sessions[id]?.requests += 1
            } else if event.kind == .tunnelOpened {
                sessions[id]?.tunnels += 1
            }
        }
        return order.compactMap { sessions[$0] }
    }

    /// What a session id or a prefix of one names among `sessions`.
    public enum Lookup: Sendable, Equatable {
        /// Exactly one session: the whole id, or the only one with that prefix.
        case found(String)
        /// No session starts with it.
        case none
        /// Several do (sorted).
        case ambiguous([String])
    }

    /// The session `prefix` names among `sessions`, as git names commits: a whole id, or a prefix
    /// that only one id has.
    public static func find(_ prefix: String, among sessions: [String]) -> Lookup {
        if sessions.contains(prefix) { return .found(prefix) }
        let matches = Set(sessions.filter { $0.hasPrefix(prefix) }).sorted()
        switch matches.count {
        case 0: return .none
        case 1: return .found(matches[0])
        default: return .ambiguous(matches)
        }
    }

    /// Most sessions `issued` returns; a log holding more in its window is refused (callers fail closed).
    public static let maximumIssued = 1 << 20

    /// The grants issued in records from `since` on, in log order, each with its end when one is
    /// recorded. Only the segments that can hold such records are read: the scan starts at the
    /// newest segment whose first record is older than `since`. Framing, CRCs and sequence numbers
    /// are checked on the way; any damage but a torn tail throws. Blocking: call it off event loops.
    public static func issued(directory: String, since: Date) throws(AuditLogError) -> [RecordedSession] {
        let indexes = try AuditLogReader.segmentIndexes(directory)
        var resume: ResumePoint?
        for index in indexes.reversed() {
            guard let first = try firstRecord(directory: directory, segment: index) else { continue }
            guard first.time >= since else {
                resume = ResumePoint(sequence: first.sequence, segment: index, offset: SegmentFormat.headerSize)
                break
            }
        }
        var order: [String] = []
        var sessions: [String: RecordedSession] = [:]
        _ = try AuditLogReader.scan(directory: directory, resumingAt: resume, decode: false) { visit throws(AuditLogError) in
            // Most records are requests: only those naming a grant event are decoded.
            let named = visit.payload.withUnsafeBytes { FastRecordFields.find(grantEvent, anchor: 2, in: $0, from: 0) != nil }
            guard named else { return }
            let event: AuditEvent
            do throws(AuditLogError) {
                event = try AuditRecord(decoding: visit.payload).event
            } catch {
                throw AuditLogError(.corrupt, "segment \(visit.segment) offset \(visit.offset): \(error.message)")
            }
            guard let id = text(event, "session") else { return }
            if event.kind == .grantIssued {
                guard sessions[id] == nil, let user = text(event, "user"), let pathway = text(event, "pathway"),
                    let expiresAt = text(event, "expires_at").flatMap(AuditRecord.parseTime)
                else { return }
                guard sessions.count < maximumIssued else {
                    throw AuditLogError(.io, "more than \(maximumIssued) grants in the audit log's recent records")
                }
                order.append(id)
                sessions[id] = RecordedSession(
                    session: id, user: user, pathway: pathway,
                    issuedAt: text(event, "issued_at").flatMap(AuditRecord.parseTime) ?? event.time, expiresAt: expiresAt,
                    tag: text(event, "tag"))
            } else if let ending = endings[event.kind], sessions[id] != nil, sessions[id]?.ending == nil {
                sessions[id]?.ending = ending
            }
        }
        return order.compactMap { sessions[$0] }
    }

    /// `"event":"grant.`, as canonical records write the kind of every grant event (a quote inside a
    /// value is always escaped, so these bytes are a key and its value).
    static let grantEvent: StaticString = "\"event\":\"grant."

    /// The sequence number and time of a segment's first record; nil when it holds none yet or its
    /// first record cannot be read (the scan checks it then).
    static func firstRecord(directory: String, segment: Int) throws(AuditLogError) -> (sequence: Int, time: Date)? {
        let path = AuditLogReader.segmentsFolder(directory) + "/" + SegmentFormat.fileName(index: segment)
        let head = SegmentFormat.headerSize + SegmentFormat.frameHeaderSize
        let bytes = try FileIO.read(path, limit: .max, upTo: head + SegmentFormat.maximumPayload)
        guard bytes.count >= head, Array(bytes[0..<SegmentFormat.magic.count]) == SegmentFormat.magic else { return nil }
        let length = Int(SegmentFormat.readBigEndian(bytes[16..<20], as: UInt32.self))
        guard length > 0, head + length <= bytes.count, let sequence = SegmentFormat.firstSequence(bytes),
            let record = try? AuditRecord(decoding: bytes[head..<head + length])
        else { return nil }
        return (sequence, record.event.time)
    }

    static func text(_ event: AuditEvent, _ key: String) -> String? {
        if case .string(let value) = event.fields[key] { return value }
        return nil
    }
}
