/// What an authenticated user asks the policy for.
public struct GrantRequest: Sendable, Equatable {
    /// The authenticated user.
    public var user: String
    /// The pathway asked for.
    public var pathway: String
    /// Why emergency access is needed.
    public var reason: String
    /// A ticket reference; required when the pathway has `require_ticket`.
    public var ticket: String?
    /// Requested length; nil takes the pathway's default.
    public var duration: Duration?
    /// The client's address as the gateway saw it.
    public var source: IPAddress?

    /// A request with the given fields.
    public init(
        user: String,
        pathway: String,
        reason: String,
        ticket: String? = nil,
        duration: Duration? = nil,
        source: IPAddress? = nil
    ) {
        self.user = user
        self.pathway = pathway
        self.reason = reason
        self.ticket = ticket
        self.duration = duration
        self.source = source
    }

    /// Limits on request fields, checked before PAM runs.
    public enum Limits {
        /// Longest user name, in bytes.
        public static let userLength = 64
        /// Longest pathway name, in bytes.
        public static let pathwayLength = 64
        /// Longest reason, in characters; it must also fit in four bytes a character.
        public static let reasonLength = 500
        /// Longest ticket, in characters; it must also fit in four bytes a character.
        public static let ticketLength = 128
        /// Longest password or one-time code, in bytes.
        public static let secretLength = 1024
    }

    /// Checks the shape of the fields (lengths, characters); nil when all is well.
    public func shapeError() -> BreakGlassError? {
        if let problem = Self.nameProblem(user, field: "user", limit: Limits.userLength) { return problem }
        if let problem = Self.nameProblem(pathway, field: "pathway", limit: Limits.pathwayLength) { return problem }
        let trimmedReason = reason.trimmingSpaces()
        if trimmedReason.isEmpty {
            return BreakGlassError(.invalidRequest, "reason is required: say why emergency access is needed")
        }
        // Characters for people, bytes for the token and the log: one Character can carry any number
        // of combining marks.
        if reason.count > Limits.reasonLength || reason.utf8.count > 4 * Limits.reasonLength {
            return BreakGlassError(
                .invalidRequest, "reason is longer than \(Limits.reasonLength) characters (\(4 * Limits.reasonLength) bytes)")
        }
        if reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return BreakGlassError(.invalidRequest, "reason contains control characters")
        }
        if let ticket {
            if ticket.count > Limits.ticketLength || ticket.utf8.count > 4 * Limits.ticketLength {
                return BreakGlassError(
                    .invalidRequest, "ticket is longer than \(Limits.ticketLength) characters (\(4 * Limits.ticketLength) bytes)")
            }
            if ticket.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                return BreakGlassError(.invalidRequest, "ticket contains control characters")
            }
        }
        return nil
    }

    /// Why a user, group or pathway name is not acceptable; nil when it is.
    public static func nameProblem(_ value: String, field: String, limit: Int) -> BreakGlassError? {
        if value.isEmpty { return BreakGlassError(.invalidRequest, "\(field) is required") }
        if value.utf8.count > limit {
            return BreakGlassError(.invalidRequest, "\(field) is longer than \(limit) bytes")
        }
        let allowed = value.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-@+".unicodeScalars.contains(scalar))
        }
        if !allowed {
            return BreakGlassError(.invalidRequest, "\(field) may only hold letters, digits and . _ - @ +")
        }
        return nil
    }
}
