import BreakGlassAuditLog
import Foundation

/// The durable file of sessions beside the audit log: a cache of what the log records, read at
/// start and rewritten whole (atomically, made durable) after each change.
enum SessionFile {
    /// One entry of the file.
    struct Record: Codable, Equatable {
        var session: String
        var user: String
        var pathway: String
        var issuedAt: Date
        var expiresAt: Date
        /// Nil while the session is live.
        var ending: SessionRegistry.Ending?

        enum CodingKeys: String, CodingKey {
            case session, user, pathway, ending
            case issuedAt = "issued_at"
            case expiresAt = "expires_at"
        }
    }

    private static let fractionalTime = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// Replaces the file with `records` (sorted by session) and returns once it is durable.
    static func write(_ records: [Record], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        // Fractions of a second kept: a restored session expires when its token does, not earlier.
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.fractionalTime))
        }
        let data = try encoder.encode(records.sorted { $0.session < $1.session })
        try DurableFile.replace(path, with: Array(data))
    }

    /// The records of the file at `path`.
    static func read(_ path: String) throws -> [Record] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            // Files written before fractions were kept have whole seconds.
            guard let date = (try? Self.fractionalTime.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text)) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        return try decoder.decode([Record].self, from: Data(DurableFile.read(path)))
    }
}
