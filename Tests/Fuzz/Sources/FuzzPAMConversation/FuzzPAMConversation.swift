import CPAM
import Foundation
import FuzzSupport

@testable import BreakGlassPAM

/// The PAM conversation function with hostile message lists: any count, styles, missing messages,
/// long or missing prompts, any number of secret prompts. It answers at most the password and then
/// the code, each once and in that order, fails closed on anything else, and leaks nothing
/// (AddressSanitizer's leak check runs at exit).
@main
enum FuzzPAMConversationMain {
    static func main() {
        runFuzzer { data, size in fuzzPAMConversation(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPAMConversation(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    guard let countByte = input.byte(), let flags = input.byte() else { return 0 }
    // Counts past the 32 the function accepts, and negative ones, are part of the input space.
    let count = Int32(Int8(bitPattern: countByte))
    let withCode = flags & 1 == 1
    let conversation = PAMConversation(password: "fuzz-password", oneTimeCode: withCode ? "123456" : nil)
    let styles = [PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_ERROR_MSG, PAM_TEXT_INFO, PAM_RADIO_TYPE, PAM_BINARY_PROMPT]
    let built = max(0, min(Int(count), 40))
    var owned: [UnsafeMutablePointer<pam_message>?] = []
    var prompts: [UnsafeMutablePointer<CChar>?] = []
    for _ in 0..<built {
        guard let kind = input.byte(), let length = input.byte() else {
            owned.append(nil)
            continue
        }
        if kind == 0xFF {
            owned.append(nil)  // a missing message
            continue
        }
        let style = kind & 0x80 == 0 ? styles[Int(kind) % styles.count] : Int32(Int8(bitPattern: kind))
        var text: UnsafeMutablePointer<CChar>?
        if kind & 0x40 == 0 {
            let bytes = input.take(Int(length) * 8).map { CChar(bitPattern: $0 == 0 ? 1 : $0) } + [0]
            text = strdup(bytes)
        }
        prompts.append(text)
        let message = UnsafeMutablePointer<pam_message>.allocate(capacity: 1)
        message.initialize(to: pam_message(msg_style: style, msg: UnsafePointer(text)))
        owned.append(message)
    }
    var responses: UnsafeMutablePointer<pam_response>?
    let context = Unmanaged.passRetained(conversation)
    let result = owned.withUnsafeMutableBufferPointer { list in
        list.baseAddress.map { base in
            base.withMemoryRebound(to: UnsafePointer<pam_message>?.self, capacity: list.count) { messages in
                PAMConversation.function(count, messages, &responses, context.toOpaque())
            }
        } ?? PAMConversation.function(count, nil, &responses, context.toOpaque())
    }
    context.release()
    require(conversation.secretsGiven <= (withCode ? 2 : 1), "gave \(conversation.secretsGiven) secrets")
    if result == PAM_SUCCESS {
        require(count > 0 && count <= 32 && Int(count) == built, "success for a list of \(count)")
        let replies = responses
        require(replies != nil, "success without replies")
        var secrets = 0
        for index in 0..<built {
            guard let replies, let reply = replies[index].resp else { continue }
            let answer = String(cString: reply)
            let style = owned[index]?.pointee.msg_style
            require(style == PAM_PROMPT_ECHO_OFF, "an answer to a message of style \(String(describing: style))")
            require(answer == (secrets == 0 ? "fuzz-password" : "123456"), "secret \(secrets) was \(answer)")
            secrets += 1
            free(reply)
        }
        free(replies)
    } else {
        require(responses == nil, "replies handed back with a failure")
    }
    for message in owned { message?.deallocate() }
    for prompt in prompts { free(prompt) }
    return 0
}
