import Foundation

/// Unpadded base64url (RFC 4648 §5), as JOSE uses it.
public enum Base64URL {
    /// The unpadded base64url text of the bytes.
    public static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Whether the text is the one unpadded base64url spelling of its bytes (unused bits zero).
    public static func isCanonical(_ text: some StringProtocol) -> Bool {
        guard let data = decode(text) else { return false }
        return encode(data) == text
    }

    /// Decodes unpadded base64url; nil when the text is not base64url.
    public static func decode(_ text: some StringProtocol) -> Data? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        let remainder = base64.count % 4
        guard remainder != 1 else { return nil }
        if remainder > 0 { base64 += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: base64)
    }
}
