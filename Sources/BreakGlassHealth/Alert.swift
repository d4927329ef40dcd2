import BreakGlassCore
import Foundation

/// A notification for people: every grant, revocation, pathway state change, audit failure and
/// certificate expiry warning. Sinks get it as one JSON object.
public struct Alert: Sendable {
    /// What happened, e.g. `grant.issued`, `grant.revoked`, `pathway.state`, `audit.failed`, `certificate.expiring`.
    public var kind: String
    /// When it happened.
    public var time: Date
    /// What happened in detail: one JSON member each.
    public var fields: [String: AuditValue]

    /// An alert of `kind` at `time` with the given fields.
    public init(kind: String, time: Date, fields: [String: AuditValue]) {
        self.kind = kind
        self.time = time
        self.fields = fields
    }

    /// `{"alert": KIND, "gateway": ID, "time": ISO8601, …fields}` with sorted keys.
    func json(gateway: String) -> Data {
        var object: [String: Any] = ["alert": kind, "gateway": gateway, "time": AuditValue.time(time).description]
        for (key, value) in fields {
            switch value {
            case .string(let text): object[key] = text
            case .integer(let number): object[key] = number
            case .strings(let texts): object[key] = texts
            case .time: object[key] = value.description
            }
        }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    /// A grant was issued.
    static package func grantIssued(_ grant: Grant) -> Alert {
        var fields: [String: AuditValue] = [
            "session": .string(grant.session), "user": .string(grant.user), "pathway": .string(grant.pathway),
            "reason": .string(grant.reason), "expires_at": .time(grant.expiresAt), "issued_at": .time(grant.issuedAt),
        ]
        fields["ticket"] = grant.ticket.map(AuditValue.string)
        fields["source"] = grant.source.map(AuditValue.string)
        fields["tag"] = grant.tag.map { .string($0.rawValue) }
        return Alert(kind: "grant.issued", time: grant.issuedAt, fields: fields)
    }
}
