import Crypto
import Foundation

/// The probe identity's secrets, read from its credentials file (`key: value` lines):
///
///     password: …
///     totp_secret: 3132333435…   # hex, as in the pam_oath users file
///     digits: 6                  # optional, 6 or 8
///     period: 30                 # optional, seconds
///     window: 1                  # optional: steps ahead the PAM stack accepts (pam_oath window=)
public struct ProbeCredentials: Sendable {
    /// The probe identity's PAM password.
    public var password: String
    /// The TOTP secret's bytes.
    public var secret: [UInt8]
    /// Digits in a one-time code: 6 or 8.
    public var digits: Int
    /// TOTP time step, in seconds.
    public var period: Int
    /// How many time steps ahead of now the PAM stack accepts a code; a round that would need a
    /// code further ahead waits for the clock.
    public var window: Int

    /// A problem in a credentials file: what is wrong and on which line.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        /// The line the problem is on, from 1; 0 when it concerns the whole file.
        public var line: Int
        /// What is wrong; never contains a secret.
        public var message: String
        /// `line N: message`, or the message alone.
        public var description: String { line > 0 ? "line \(line): \(message)" : message }
    }

    /// Parses the file's text; never echoes a secret in an error.
    public init(parsing text: String) throws(Problem) {
        var values: [String: (String, Int)] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw Problem(line: number + 1, message: "expected `key: value`")
            }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard ["password", "totp_secret", "digits", "period", "window"].contains(key) else {
                throw Problem(
                    // The key is not repeated: a line that lost its key may hold a secret.
                    line: number + 1, message: "unknown key (the keys are password, totp_secret, digits, period, window)")
            }
            guard values[key] == nil else { throw Problem(line: number + 1, message: "\(key) is given twice") }
            values[key] = (value, number + 1)
        }
        guard let password = values["password"], !password.0.isEmpty else { throw Problem(line: 0, message: "password is missing") }
        guard let secretText = values["totp_secret"] else { throw Problem(line: 0, message: "totp_secret is missing") }
        guard let secret = Self.hexBytes(secretText.0), secret.count >= 10 else {
            throw Problem(line: secretText.1, message: "totp_secret must be hex (at least 20 digits), as in the pam_oath users file")
        }
        var digits = 6
        if let (text, line) = values["digits"] {
            guard let value = Int(text), value == 6 || value == 8 else { throw Problem(line: line, message: "digits must be 6 or 8") }
            digits = value
        }
        var period = 30
        if let (text, line) = values["period"] {
            guard let value = Int(text.hasSuffix("s") ? String(text.dropLast()) : text), (10...300).contains(value) else {
                throw Problem(line: line, message: "period must be 10 to 300 seconds")
            }
            period = value
        }
        var window = 1
        if let (text, line) = values["window"] {
            guard let value = Int(text), (0...20).contains(value) else {
                throw Problem(line: line, message: "window must be 0 to 20 steps")
            }
            window = value
        }
        self.window = window
        self.password = password.0
        self.secret = secret
        self.digits = digits
        self.period = period
    }

    /// Reads a credentials file after the same owner and mode checks as a private key.
    public static func load(path: String) throws(Problem) -> ProbeCredentials {
        let text: String
        do {
            text = try KeyFile.readPrivate(path: path)
        } catch {
            throw Problem(line: 0, message: error.description)
        }
        do {
            return try ProbeCredentials(parsing: text)
        } catch {
            throw Problem(line: error.line, message: "\(path)" + (error.line > 0 ? ":\(error.line)" : "") + ": " + error.message)
        }
    }

    /// The time step a moment falls in.
    public func step(at date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 / Double(period)).rounded(.down))
    }

    /// The RFC 6238 code (HMAC-SHA1) of a time step.
    public func code(step: Int64) -> String {
        var counter = UInt64(bitPattern: step).bigEndian
        let message = withUnsafeBytes(of: &counter) { Array($0) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
        let offset = Int(mac[mac.count - 1] & 0x0f)
        let value =
            (UInt32(mac[offset] & 0x7f) << 24) | (UInt32(mac[offset + 1]) << 16) | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        let modulus: UInt32 = digits == 8 ? 100_000_000 : 1_000_000
        let digitsText = String(value % modulus)
        return String(repeating: "0", count: digits - digitsText.count) + digitsText
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count.isMultiple(of: 2), !digits.isEmpty else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
