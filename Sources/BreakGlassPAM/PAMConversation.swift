import BreakGlassCore
import CPAM

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The answers one PAM transaction may give, and what it has given so far.
///
/// The first hidden prompt gets the password, the second the one-time code; anything else (a visible
/// prompt, a third secret, a code nobody supplied) fails the conversation closed.
final class PAMConversation {
    private let password: String
    private let oneTimeCode: String?
    private(set) var secretsGiven = 0
    private(set) var messages: [String] = []
    private(set) var refusal: String?

    init(password: String, oneTimeCode: String?) {
        self.password = password
        self.oneTimeCode = oneTimeCode
    }

    /// The answer to one prompt, or nil to fail the conversation. Once it has refused, it refuses
    /// everything after: a later module of the same stack gets no secret.
    func answer(style: Int32, prompt: String) -> String?? {
        guard refusal == nil else { return nil }
        switch style {
        case PAM_PROMPT_ECHO_OFF:
            switch secretsGiven {
            case 0:
                secretsGiven = 1
                return .some(password)
            case 1:
                guard let oneTimeCode else {
                    refusal = "the PAM stack asked for a one-time code and none was given"
                    return nil
                }
                secretsGiven = 2
                return .some(oneTimeCode)
            default:
                refusal = "the PAM stack asked for more than two secrets"
                return nil
            }
        case PAM_PROMPT_ECHO_ON:
            refusal = "the PAM stack asked a visible question (\(BoundedText.cut(prompt, bytes: 80))) that the gateway cannot answer"
            return nil
        case PAM_ERROR_MSG, PAM_TEXT_INFO:
            if messages.count < 16 { messages.append(BoundedText.cut(prompt, bytes: 200)) }
            return .some(nil)
        default:
            refusal = "the PAM stack sent an unknown message style \(style)"
            return nil
        }
    }

    /// Fails the conversation (the first reason is kept): nothing is answered after this.
    func fail(_ why: String) {
        if refusal == nil { refusal = why }
    }

    /// The C conversation function; its context arrives through `appdata_ptr`.
    static let function:
        @convention(c) (
            Int32, UnsafeMutablePointer<UnsafePointer<pam_message>?>?,
            UnsafeMutablePointer<UnsafeMutablePointer<pam_response>?>?, UnsafeMutableRawPointer?
        ) -> Int32 = { count, messages, responses, context in
            guard let context else { return PAM_CONV_ERR }
            let conversation = Unmanaged<PAMConversation>.fromOpaque(context).takeUnretainedValue()
            // Every failed call fails the rest of the conversation: what it answered was never
            // delivered, so a later prompt must not be taken as the one after it.
            guard count > 0, count <= 32, let messages, let responses else {
                conversation.fail("the PAM stack sent a list of \(count) messages")
                return PAM_CONV_ERR
            }
            guard
                let replies = calloc(Int(count), MemoryLayout<pam_response>.stride)?.bindMemory(to: pam_response.self, capacity: Int(count))
            else {
                conversation.fail("no memory for the answers")
                return PAM_BUF_ERR
            }
            for index in 0..<Int(count) {
                guard let message = messages[index] else {
                    conversation.fail("the PAM stack sent a list with a missing message")
                    freeReplies(replies, count: index)
                    return PAM_CONV_ERR
                }
                let prompt = message.pointee.msg.map { String(cString: $0) } ?? ""
                guard let answer = conversation.answer(style: message.pointee.msg_style, prompt: prompt) else {
                    freeReplies(replies, count: index)
                    return PAM_CONV_ERR
                }
                if let answer {
                    guard let copy = strdup(answer) else {
                        conversation.fail("no memory for the answers")
                        freeReplies(replies, count: index)
                        return PAM_BUF_ERR
                    }
                    replies[index].resp = copy
                }
                replies[index].resp_retcode = 0
            }
            responses.pointee = replies
            return PAM_SUCCESS
        }

    /// Frees the first `count` replies (wiping secrets) and the array itself.
    private static func freeReplies(_ replies: UnsafeMutablePointer<pam_response>, count: Int) {
        for index in 0..<count {
            if let text = replies[index].resp {
                // explicit_bzero: a memset before free may be removed by the optimizer.
                explicit_bzero(text, strlen(text))
                free(text)
            }
        }
        free(replies)
    }
}
