/// Why the audit log cannot be opened, written or verified; `code` is stable.
public struct AuditLogError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let io = Code(rawValue: "io")
        public static let corrupt = Code(rawValue: "corrupt")
        public static let malformedRecord = Code(rawValue: "malformed_record")
        public static let recordTooLarge = Code(rawValue: "record_too_large")
        public static let writerStopped = Code(rawValue: "writer_stopped")
        public static let badCheckpoint = Code(rawValue: "bad_checkpoint")
        public static let rollback = Code(rawValue: "rollback")
        public static let key = Code(rawValue: "key")
        /// No new segment can be made and the reserve is used up; writing resumes when space returns.
        public static let full = Code(rawValue: "full")
        /// Too much proof work at once; try again shortly.
        public static let busy = Code(rawValue: "busy")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
