/// Why the audit log cannot be opened, written or verified; `code` is stable.
public struct AuditLogError: Error, Sendable, CustomStringConvertible, Equatable {
    /// A stable error code.
    public struct Code: RawRepresentable, Hashable, Sendable {
        /// The code's text, as shown and logged.
        public let rawValue: String
        /// A code with the given text.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Reading or writing a file failed.
        public static let io = Code(rawValue: "io")
        /// The segments or state files are damaged.
        public static let corrupt = Code(rawValue: "corrupt")
        /// A record is not valid canonical JSON of the expected shape.
        public static let malformedRecord = Code(rawValue: "malformed_record")
        /// A record is larger than `AuditRecord.maximumSize`.
        public static let recordTooLarge = Code(rawValue: "record_too_large")
        /// The writer has stopped; nothing more can be recorded.
        public static let writerStopped = Code(rawValue: "writer_stopped")
        /// A checkpoint is malformed, wrongly signed or does not match the records.
        public static let badCheckpoint = Code(rawValue: "bad_checkpoint")
        /// A checkpoint is older than one seen before: the log was rolled back.
        public static let rollback = Code(rawValue: "rollback")
        /// The signing key cannot be read or is not valid.
        public static let key = Code(rawValue: "key")
        /// No new segment can be made and the reserve is used up; writing resumes when space returns.
        public static let full = Code(rawValue: "full")
        /// Too much proof work at once; try again shortly.
        public static let busy = Code(rawValue: "busy")
    }

    /// What kind of failure it is.
    public var code: Code
    /// What happened, for people; names no secrets.
    public var message: String

    /// An error with `code` and `message`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
