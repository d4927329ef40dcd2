import CPAM
import Foundation
import FuzzSupport

@testable import BreakGlassPAM

/// The PAM conversation function with hostile message lists, called up to three times in one
/// transaction as a stack of modules would: any count, styles, missing messages, long or missing
/// prompts, any number of secret prompts. Across the calls it answers at most the password and then
/// the code, each once and in that order; once it has refused anything it gives no further secret;
/// what it keeps of the stack's messages is bounded; and it leaks nothing (AddressSanitizer's leak
/// check runs at exit).
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
    guard let flags = input.byte() else { return 0 }
    let withCode = flags & 1 == 1
    let conversation = PAMConversation(password: "fuzz-password", oneTimeCode: withCode ? "123456" : nil)
    var answered = 0
    for _ in 0..<3 {
        guard let countByte = input.byte() else { break }
        let refusedBefore = conversation.refusal != nil
        let given = call(conversation, count: Int32(Int8(bitPattern: countByte)), input: &input, answeredBefore: answered)
        require(!refusedBefore || given == 0, "a secret given after the conversation refused")
        answered += given
        require(conversation.secretsGiven <= (withCode ? 2 : 1), "gave \(conversation.secretsGiven) secrets")
        require(answered <= conversation.secretsGiven, "answered \(answered) secrets, counted \(conversation.secretsGiven)")
    }
    require(conversation.messages.count <= 16, "kept \(conversation.messages.count) messages")
    require(conversation.messages.allSatisfy { $0.utf8.count <= 200 }, "kept a message over 200 bytes")
    require((conversation.refusal?.utf8.count ?? 0) <= 200, "a refusal of \(conversation.refusal?.utf8.count ?? 0) bytes")
    return 0
}

/// One call of the conversation function with a message list read from `input`; returns how many
/// secrets it answered. Counts past the 32 the function accepts, and negative ones, are part of the
/// input space.
func call(_ conversation: PAMConversation, count: Int32, input: inout FuzzInput, answeredBefore: Int) -> Int {
    let styles = [PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_ERROR_MSG, PAM_TEXT_INFO, PAM_RADIO_TYPE, PAM_BINARY_PROMPT]
    let built = max(0, min(Int(count), 40))
    var owned: [UnsafeMutablePointer<pam_message>?] = []
    var prompts: [UnsafeMutablePointer<CChar>?] = []
    defer {
        for message in owned { message?.deallocate() }
        for prompt in prompts { free(prompt) }
    }
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
    guard result == PAM_SUCCESS else {
        require(responses == nil, "replies handed back with a failure")
        return 0
    }
    require(count > 0 && count <= 32 && Int(count) == built, "success for a list of \(count)")
    guard let replies = responses else {
        require(false, "success without replies")
        return 0
    }
    var secrets = 0
    for index in 0..<built {
        guard let reply = replies[index].resp else { continue }
        let answer = String(cString: reply)
        let style = owned[index]?.pointee.msg_style
        require(style == PAM_PROMPT_ECHO_OFF, "an answer to a message of style \(String(describing: style))")
        require(answer == (answeredBefore + secrets == 0 ? "fuzz-password" : "123456"), "secret \(answeredBefore + secrets) was \(answer)")
        secrets += 1
        free(reply)
    }
    free(replies)
    return secrets
}
