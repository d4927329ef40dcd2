import Foundation

/// One audited fact. Events hold no secrets: never a password, one-time code, token or key.
public struct AuditEvent: Sendable, Equatable {
    /// The event type, e.g. `grant.issued` (an open set).
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The event type's name as records carry it.
        public let rawValue: String
        /// A kind with the given name.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The kind's name.
        public var description: String { rawValue }

        /// The gateway started serving.
        public static let gatewayStarted = Kind(rawValue: "gateway.started")
        /// The gateway stopped.
        public static let gatewayStopped = Kind(rawValue: "gateway.stopped")
        /// A policy was loaded (at start or on reload).
        public static let policyLoaded = Kind(rawValue: "policy.loaded")
        /// A policy reload was refused; the last known good policy stays in force.
        public static let policyRejected = Kind(rawValue: "policy.rejected")
        /// A grant was issued.
        public static let grantIssued = Kind(rawValue: "grant.issued")
        /// A grant request was refused.
        public static let grantDenied = Kind(rawValue: "grant.denied")
        /// A grant was released by its holder.
        public static let grantReleased = Kind(rawValue: "grant.released")
        /// A grant was revoked before it expired.
        public static let grantRevoked = Kind(rawValue: "grant.revoked")
        /// A grant reached its expiry.
        public static let grantExpired = Kind(rawValue: "grant.expired")
        /// The log cut a torn tail off its last segment when it opened.
        public static let auditRecovered = Kind(rawValue: "audit.recovered")
        /// A request was proxied to an HTTP upstream.
        public static let request = Kind(rawValue: "request")
        /// A proxied request or tunnel was refused.
        public static let requestDenied = Kind(rawValue: "request.denied")
        /// A TCP tunnel was opened.
        public static let tunnelOpened = Kind(rawValue: "tunnel.opened")
        /// A TCP tunnel was closed.
        public static let tunnelClosed = Kind(rawValue: "tunnel.closed")
        /// A self-test round finished.
        public static let probeRound = Kind(rawValue: "probe.round")
        /// A pathway's health state changed.
        public static let pathwayState = Kind(rawValue: "pathway.state")
        /// An alert could not be delivered on one attempt.
        public static let alertFailed = Kind(rawValue: "alert.failed")
        /// An alert was dropped without being delivered.
        public static let alertDropped = Kind(rawValue: "alert.dropped")
    }

    /// What happened.
    public var kind: Kind
    /// When it happened.
    public var time: Date
    /// Event fields by name; values are strings, integers or lists of strings.
    public var fields: [String: AuditValue]

    /// An event of `kind` at `time` with the given fields.
    public init(kind: Kind, time: Date, fields: [String: AuditValue] = [:]) {
        self.kind = kind
        self.time = time
        self.fields = fields
    }

    /// A grant was issued; `tokenSHA256` is the hex SHA-256 of the token, never the token itself.
    public static func grantIssued(_ grant: Grant, tokenSHA256: String) -> AuditEvent {
        var fields: [String: AuditValue] = [
            "session": .string(grant.session),
            "user": .string(grant.user),
            "pathway": .string(grant.pathway),
            "reason": .string(grant.reason),
            "issued_at": .time(grant.issuedAt),
            "expires_at": .time(grant.expiresAt),
            "amr": .strings(grant.amr),
            "token_sha256": .string(tokenSHA256),
        ]
        fields["ticket"] = grant.ticket.map(AuditValue.string)
        fields["source"] = grant.source.map(AuditValue.string)
        fields["tag"] = grant.tag.map { AuditValue.string($0.rawValue) }
        return AuditEvent(kind: .grantIssued, time: grant.issuedAt, fields: fields)
    }

    /// A grant request was refused.
    public static func grantDenied(
        time: Date,
        user: String?,
        source: String?,
        pathway: String?,
        reason: String?,
        ticket: String?,
        error: BreakGlassError
    ) -> AuditEvent {
        var fields: [String: AuditValue] = [
            "code": .string(error.code.rawValue),
            "message": .string(error.message),
        ]
        fields["user"] = user.map(AuditValue.string)
        fields["source"] = source.map(AuditValue.string)
        fields["pathway"] = pathway.map(AuditValue.string)
        fields["reason"] = reason.map(AuditValue.string)
        fields["ticket"] = ticket.map(AuditValue.string)
        return AuditEvent(kind: .grantDenied, time: time, fields: fields)
    }
}

/// A value in an audit event.
public enum AuditValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case strings([String])
    case time(Date)

    /// The value as text: lists joined by commas, times in ISO 8601.
    public var description: String {
        switch self {
        case .string(let value): value
        case .integer(let value): String(value)
        case .strings(let values): values.joined(separator: ",")
        case .time(let date): date.formatted(.iso8601)
        }
    }
}
