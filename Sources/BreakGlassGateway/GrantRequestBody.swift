import BreakGlassAPI
import BreakGlassCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// The JSON body of `POST /v1/grants`, or of `POST /v1/probe/grants` (user, password, otp and
/// `pathways`, a list).
struct GrantRequestBody: Decodable {
    let user: String
    let password: String
    let otp: String?
    let pathway: String
    let reason: String
    let ticket: String?
    let duration: String?
    /// `drill` marks a rehearsal (audited and alerted as such); nothing else is accepted.
    let tag: String?
    /// The pathways a probe login asks grants for.
    let pathways: [String]

    static let fields = ["user", "password", "otp", "pathway", "reason", "ticket", "duration", "tag"]
    static let probeFields = ["user", "password", "otp", "pathways"]

    /// Decodes the body; errors name the field at fault and never echo a secret.
    static func decode(_ body: ByteBuffer, probe: Bool = false) throws(BreakGlassError) -> GrantRequestBody {
        let fields = probe ? probeFields : fields
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
            throw BreakGlassError(
                .invalidRequest, "unknown field \"\(BoundedText.cut(unknown, bytes: 40))\"; fields are \(fields.joined(separator: ", "))")
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
        var pathways: [String] = []
        if probe {
            guard let list = object["pathways"] as? [String], !list.isEmpty, list.count <= 1000 else {
                throw BreakGlassError(.invalidRequest, "field \"pathways\" must be a list of 1 to 1000 pathway names")
            }
            pathways = list
        }
        return GrantRequestBody(
            user: try text("user", required: true) ?? "",
            password: try text("password", required: true) ?? "",
            otp: try text("otp", required: false),
            pathway: try text("pathway", required: !probe) ?? "",
            reason: try text("reason", required: !probe) ?? "probe round",
            ticket: try text("ticket", required: false),
            duration: try text("duration", required: false),
            tag: try text("tag", required: false),
            pathways: pathways
        )
    }
}

extension GrantAnswer {
    /// The answer for `grant` as of `now`; `token` only in the answer to a login, `kind` with it.
    init(grant: Grant, token: String?, now: Date, kind: Pathway.Kind? = nil) {
        self.init(
            token: token, session: grant.session, pathway: grant.pathway, user: grant.user, reason: grant.reason, ticket: grant.ticket,
            amr: grant.amr, issuedAt: grant.issuedAt, expiresAt: grant.expiresAt,
            expiresInSeconds: max(0, Int(grant.expiresAt.timeIntervalSince(now))), tag: grant.tag?.rawValue, kind: kind?.rawValue)
    }
}
