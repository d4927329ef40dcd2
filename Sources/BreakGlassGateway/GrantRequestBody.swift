import BreakGlassCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// The JSON body of `POST /v1/grants`.
struct GrantRequestBody: Decodable {
    let user: String
    let password: String
    let otp: String?
    let pathway: String
    let reason: String
    let ticket: String?
    let duration: String?

    static let fields = ["user", "password", "otp", "pathway", "reason", "ticket", "duration"]

    /// Decodes the body; errors name the field at fault and never echo a secret.
    static func decode(_ body: ByteBuffer) throws(BreakGlassError) -> GrantRequestBody {
        guard body.readableBytes > 0 else {
            throw BreakGlassError(.invalidRequest, "the body must be a JSON object with user, password, otp, pathway and reason")
        }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                throw BreakGlassError(.invalidRequest, "the body must be a JSON object")
            }
            object = parsed
        } catch let error as BreakGlassError {
            throw error
        } catch {
            throw BreakGlassError(.invalidRequest, "the body is not valid JSON")
        }
        if let unknown = object.keys.sorted().first(where: { !fields.contains($0) }) {
            throw BreakGlassError(.invalidRequest, "unknown field \"\(unknown.prefix(40))\"; fields are \(fields.joined(separator: ", "))")
        }
        func text(_ name: String, required: Bool) throws(BreakGlassError) -> String? {
            switch object[name] {
            case nil, is NSNull:
                if required { throw BreakGlassError(.invalidRequest, "field \"\(name)\" is required") }
                return nil
            case let value as String:
                return value
            default:
                throw BreakGlassError(.invalidRequest, "field \"\(name)\" must be a string")
            }
        }
        return GrantRequestBody(
            user: try text("user", required: true) ?? "",
            password: try text("password", required: true) ?? "",
            otp: try text("otp", required: false),
            pathway: try text("pathway", required: true) ?? "",
            reason: try text("reason", required: true) ?? "",
            ticket: try text("ticket", required: false),
            duration: try text("duration", required: false)
        )
    }
}

/// A grant as the API shows it: the `201` of `POST /v1/grants` (with the token) and
/// `GET /v1/grants/current` (without).
struct GrantBody: Encodable {
    let token: String?
    let session: String
    let pathway: String
    let user: String
    let reason: String
    let ticket: String?
    let amr: [String]
    let issuedAt: Date
    let expiresAt: Date
    let expiresInSeconds: Int

    init(grant: Grant, token: String?, now: Date) {
        self.token = token
        self.session = grant.session
        self.pathway = grant.pathway
        self.user = grant.user
        self.reason = grant.reason
        self.ticket = grant.ticket
        self.amr = grant.amr
        self.issuedAt = grant.issuedAt
        self.expiresAt = grant.expiresAt
        self.expiresInSeconds = max(0, Int(grant.expiresAt.timeIntervalSince(now)))
    }

    enum CodingKeys: String, CodingKey {
        case token, session, pathway, user, reason, ticket, amr
        case issuedAt = "issued_at"
        case expiresAt = "expires_at"
        case expiresInSeconds = "expires_in_seconds"
    }
}
