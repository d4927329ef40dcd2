import CPAM
import Foundation
import Testing

@testable import BreakGlassPAM

/// The conversation function called as PAM modules call it, with message lists built here.
@Suite struct PAMConversationTests {
    /// A message: its style and prompt, or nil for a missing entry of the list.
    typealias Message = (style: Int32, prompt: String)?

    /// Calls the conversation function once with `messages`; returns PAM's status and the answers.
    static func call(_ conversation: PAMConversation, _ messages: [Message]) -> (status: Int32, answers: [String?]) {
        var prompts: [UnsafeMutablePointer<CChar>?] = []
        var list: [UnsafeMutablePointer<pam_message>?] = []
        defer {
            for message in list { message?.deallocate() }
            for prompt in prompts { free(prompt) }
        }
        for message in messages {
            guard let message else {
                list.append(nil)
                continue
            }
            let prompt = strdup(message.prompt)
            prompts.append(prompt)
            let entry = UnsafeMutablePointer<pam_message>.allocate(capacity: 1)
            entry.initialize(to: pam_message(msg_style: message.style, msg: UnsafePointer(prompt)))
            list.append(entry)
        }
        var responses: UnsafeMutablePointer<pam_response>?
        let context = Unmanaged.passRetained(conversation)
        defer { context.release() }
        let status = list.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.map { base in
                base.withMemoryRebound(to: UnsafePointer<pam_message>?.self, capacity: buffer.count) {
                    PAMConversation.function(Int32(buffer.count), $0, &responses, context.toOpaque())
                }
            } ?? PAM_CONV_ERR
        }
        guard status == PAM_SUCCESS, let replies = responses else { return (status, []) }
        defer { free(replies) }
        return (
            status,
            (0..<messages.count).map { index in
                guard let text = replies[index].resp else { return nil }
                defer { free(text) }
                return String(cString: text)
            }
        )
    }

    @Test func thePasswordThenTheCodeEachOnce() {
        let conversation = PAMConversation(password: "pw", oneTimeCode: "123456")
        let first = Self.call(conversation, [(PAM_TEXT_INFO, "hello"), (PAM_PROMPT_ECHO_OFF, "Password: ")])
        #expect(first.status == PAM_SUCCESS && first.answers == [nil, "pw"])
        let second = Self.call(conversation, [(PAM_PROMPT_ECHO_OFF, "Code: ")])
        #expect(second.status == PAM_SUCCESS && second.answers == ["123456"])
        #expect(Self.call(conversation, [(PAM_PROMPT_ECHO_OFF, "More: ")]).status == PAM_CONV_ERR)
    }

    /// A call that fails delivers nothing, so no later call may go on from it: the password given in
    /// a failed call must not make the next password prompt get the code. Found by FuzzPAMConversation
    /// (a list with a missing entry after the password prompt, then a password prompt again: the
    /// second prompt got the one-time code). Now any failed call fails the rest of the conversation.
    @Test func aFailedCallEndsTheConversation() {
        for broken: [Message] in [[(PAM_PROMPT_ECHO_OFF, "Password: "), nil], [(PAM_PROMPT_ECHO_OFF, "Password: "), (1234, "?")]] {
            let conversation = PAMConversation(password: "pw", oneTimeCode: "123456")
            #expect(Self.call(conversation, broken).status != PAM_SUCCESS)
            let again = Self.call(conversation, [(PAM_PROMPT_ECHO_OFF, "Password: ")])
            #expect(again.status != PAM_SUCCESS, "a later call was answered: \(again.answers)")
            #expect(conversation.refusal != nil)
        }
    }
}
