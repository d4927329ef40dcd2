import BreakGlassCore
import Foundation
import FuzzSupport
import NIOCore

@testable import BreakGlassGateway

/// The body of `POST /v1/grants` (and of a probe's login, when the first byte is odd): it decodes, or
/// it is refused as `invalid_request` with a message that never repeats the password or the code.
@main
enum FuzzGrantBodyMain {
    static func main() {
        runFuzzer { data, size in fuzzGrantBody(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGrantBody(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    guard let mode = input.byte() else { return 0 }
    let bytes = input.rest
    do {
        let body = try GrantRequestBody.decode(ByteBuffer(bytes: bytes), probe: mode & 1 == 1)
        require(mode & 1 == 0 || !body.pathways.isEmpty, "a probe login names no pathway")
        checkShape(body)
    } catch {
        require(error.code == .invalidRequest, "a body was refused with \(error.code), not invalid_request")
        // The password and code must not come back in the error. Other text the sender chose may
        // (an unknown field's name), so the check replaces both with marks that appear nowhere else
        // and decodes again: the error must not carry a mark.
        if var object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["password"] is String || object["otp"] is String
        {
            for field in ["password", "otp"] where object[field] is String { object[field] = "\u{1}secret-\(field)\u{1}" }
            if let marked = try? JSONSerialization.data(withJSONObject: object) {
                do {
                    _ = try GrantRequestBody.decode(ByteBuffer(bytes: marked), probe: mode & 1 == 1)
                } catch {
                    require(!error.message.contains("secret-"), "the error repeats a secret: \(error.message)")
                }
            }
        }
    }
    return 0
}

/// What the grant path checks next, before PAM: a request whose shape passes has bounded fields in
/// bytes (they go into the token and the audit record) and no control character; a duration that
/// parses is not negative.
func checkShape(_ body: GrantRequestBody) {
    let request = GrantRequest(user: body.user, pathway: body.pathway, reason: body.reason, ticket: body.ticket)
    if let error = request.shapeError() {
        require(error.code == .invalidRequest, "a shape refusal with \(error.code)")
        require(error.message.utf8.count <= 200, "a shape refusal of \(error.message.utf8.count) bytes")
    } else {
        require(body.user.utf8.count <= GrantRequest.Limits.userLength, "a user of \(body.user.utf8.count) bytes")
        require(body.pathway.utf8.count <= GrantRequest.Limits.pathwayLength, "a pathway of \(body.pathway.utf8.count) bytes")
        require(body.reason.utf8.count <= 4 * GrantRequest.Limits.reasonLength, "a reason of \(body.reason.utf8.count) bytes")
        require((body.ticket?.utf8.count ?? 0) <= 4 * GrantRequest.Limits.ticketLength, "a ticket over its bound")
        for text in [body.reason, body.ticket ?? ""] {
            require(!text.unicodeScalars.contains { $0.properties.generalCategory == .control }, "a control character passed")
        }
    }
    if let text = body.duration, let duration = Duration(policyText: text) {
        require(duration >= .zero, "a negative duration from \(text)")
        require(text.utf8.contains { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }, "a duration without digits from \(text)")
    }
}
