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
