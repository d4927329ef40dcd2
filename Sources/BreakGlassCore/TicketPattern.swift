import Foundation

/// A compiled `require_ticket` regular expression; a ticket must match it as a whole.
public struct TicketPattern: Sendable, Equatable {
    /// The regular expression as written in the policy.
    public let pattern: String
    private let expression: NSRegularExpression

    /// Compiles the pattern; throws the regular expression error when it does not compile.
    public init(_ pattern: String) throws {
        self.pattern = pattern
        self.expression = try NSRegularExpression(pattern: pattern)
    }

    /// True when the whole ticket matches.
    public func matches(_ ticket: String) -> Bool {
        let whole = NSRange(ticket.startIndex..<ticket.endIndex, in: ticket)
        guard let match = expression.firstMatch(in: ticket, options: [.anchored], range: whole) else { return false }
        return match.range == whole
    }

    /// Equal when the patterns' text is equal.
    public static func == (lhs: TicketPattern, rhs: TicketPattern) -> Bool { lhs.pattern == rhs.pattern }
}
