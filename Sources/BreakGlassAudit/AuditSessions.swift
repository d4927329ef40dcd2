import BreakGlassCore
import Foundation

/// One emergency session as the audit log tells it.
public struct SessionSummary: Sendable, Equatable, Codable {
    public var session: String
    public var user: String
    public var pathway: String
    public var reason: String
    public var ticket: String?
    public var source: String?
    public var startedAt: Date
    public var expiresAt: Date?
    /// When and how it ended: `released`, `revoked`, `expired`; nil while no end event exists.
    public var endedAt: Date?
    public var ending: String?
    public var requests: Int
    public var tunnels: Int

    enum CodingKeys: String, CodingKey {
        case session, user, pathway, reason, ticket, source, ending, requests, tunnels
        case startedAt = "started_at"
        case expiresAt = "expires_at"
        case endedAt = "ended_at"
    }
}

/// Groups audit records into sessions.
public enum AuditSessions {
    static let endings: [AuditEvent.Kind: String] = [.grantReleased: "released", .grantRevoked: "revoked", .grantExpired: "expired"]

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
                    tunnels: 0
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

    static func text(_ event: AuditEvent, _ key: String) -> String? {
        if case .string(let value) = event.fields[key] { return value }
        return nil
    }
}
