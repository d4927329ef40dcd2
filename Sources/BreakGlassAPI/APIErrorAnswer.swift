import Foundation

/// The body of every API error: `{"error": {"code": CODE, "message": MESSAGE}}`, the code stable.
public struct APIErrorAnswer: Codable, Sendable, Equatable {
    /// The code and the message.
    public struct Detail: Codable, Sendable, Equatable {
        /// The stable code (`invalid_token`, `forbidden`, …).
        public var code: String
        /// What went wrong, for people.
        public var message: String

        /// A detail with the given code and message.
        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// The error.
    public var error: Detail

    /// An error body with `code` and `message`.
    public init(code: String, message: String) {
        self.error = Detail(code: code, message: message)
    }

    /// `MESSAGE [CODE]` of an error body, or nil when the bytes are not one.
    public static func text(_ bytes: [UInt8]) -> String? {
        guard let answer = try? JSONDecoder().decode(APIErrorAnswer.self, from: Data(bytes)) else { return nil }
        return "\(answer.error.message) [\(answer.error.code)]"
    }
}
