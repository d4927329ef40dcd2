/// An error the gateway reports to a client: a stable code, an HTTP status and a message for people.
///
/// The message never contains a secret and never says whether a user exists.
public struct BreakGlassError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error code (an open set: new codes may be added).
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The code as clients see it, e.g. `invalid_token`.
        public let rawValue: String
        /// The HTTP status that goes with this code.
        public let httpStatus: Int

        /// The known code with this text; nil for any other.
        public init?(rawValue: String) {
            guard let known = Self.all.first(where: { $0.rawValue == rawValue }) else { return nil }
            self = known
        }

        private init(_ rawValue: String, _ httpStatus: Int) {
            self.rawValue = rawValue
            self.httpStatus = httpStatus
        }

        /// The code's text.
        public var description: String { rawValue }

        /// The request is malformed or misses a required field.
        public static let invalidRequest = Code("invalid_request", 400)
        /// The password, the one-time code or the user is wrong (never says which).
        public static let authenticationFailed = Code("authentication_failed", 401)
        /// The bearer token is missing, malformed, expired or not valid for this use.
        public static let invalidToken = Code("invalid_token", 401)
        /// The policy refuses the request; the message gives the policy's reason.
        public static let forbidden = Code("forbidden", 403)
        /// No pathway of that name exists.
        public static let unknownPathway = Code("unknown_pathway", 404)
        /// No such route.
        public static let notFound = Code("not_found", 404)
        /// The route exists but not for this method.
        public static let methodNotAllowed = Code("method_not_allowed", 405)
        /// The request body is larger than the gateway accepts.
        public static let payloadTooLarge = Code("payload_too_large", 413)
        /// Too many failed logins for this user or source; retry later.
        public static let lockedOut = Code("locked_out", 429)
        /// The request's head or body did not arrive in time (too slow, or stalled).
        public static let requestTimeout = Code("request_timeout", 408)
        /// The request asks for a transfer coding the gateway does not implement.
        public static let notImplemented = Code("not_implemented", 501)
        /// The request's header block is larger than the gateway accepts.
        public static let headersTooLarge = Code("headers_too_large", 431)
        /// The gateway cannot serve the request now (PAM busy or broken, shutting down).
        public static let unavailable = Code("unavailable", 503)
        /// The audit log cannot record the event, so the request is refused (no audit, no access).
        public static let auditUnavailable = Code("audit_unavailable", 503)
        /// The pathway's upstream refused or dropped the connection, or could not be reached.
        public static let upstreamUnreachable = Code("upstream_unreachable", 502)
        /// The pathway's upstream did not connect or answer in time.
        public static let upstreamTimeout = Code("upstream_timeout", 504)
        /// The pathway already has as many upstream connections as its policy allows.
        public static let upstreamBusy = Code("upstream_busy", 503)

        static let all: [Code] = [
            .invalidRequest, .authenticationFailed, .invalidToken, .forbidden, .unknownPathway, .notFound,
            .methodNotAllowed, .requestTimeout, .payloadTooLarge, .lockedOut, .headersTooLarge, .unavailable, .auditUnavailable,
            .upstreamUnreachable, .upstreamTimeout, .upstreamBusy, .notImplemented,
        ]
    }

    /// What kind of error it is.
    public var code: Code
    /// What went wrong, for people; never a secret, never whether a user exists.
    public var message: String
    /// Seconds after which a client may retry (for `locked_out` and `unavailable`).
    public var retryAfterSeconds: Int?

    /// An error with `code` and `message`, and a retry delay in seconds for `locked_out` and `unavailable`.
    public init(_ code: Code, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// `code: message`.
    public var description: String { "\(code.rawValue): \(message)" }
}
