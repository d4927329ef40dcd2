import Crypto
import Foundation

/// An Ed25519 key for C2SP signed notes: the log's checkpoint signer, or just its verifier.
public struct NoteVerifier: Sendable, Equatable {
    /// The key name (the log's origin).
    public let name: String
    /// The Ed25519 public key.
    public let publicKey: Curve25519.Signing.PublicKey
    /// First four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
    public let keyID: [UInt8]

    /// The verifier for `publicKey` under the key name `name`.
    public init(name: String, publicKey: Curve25519.Signing.PublicKey) {
        self.name = name
        self.publicKey = publicKey
        var hasher = SHA256()
        hasher.update(data: Array(name.utf8) + [0x0A, 0x01])
        hasher.update(data: publicKey.rawRepresentation)
        self.keyID = Array(hasher.finalize().prefix(4))
    }

    /// Parses a verifier key string `name+hexid+base64(0x01 ‖ key)`; nil when malformed or the id does not match.
    public init?(keyString: String) {
        let parts = keyString.trimmingCharacters(in: .whitespacesAndNewlines).split(
            separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].count == 8,
            let encoded = Data(base64Encoded: String(parts[2])), encoded.count == 33, encoded.first == 0x01,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: encoded.dropFirst())
        else { return nil }
        self.init(name: String(parts[0]), publicKey: key)
        guard Self.hex(keyID) == parts[1].lowercased() else { return nil }
    }

    /// The verifier key string, as `breakglass audit key` prints it.
    public var keyString: String {
        "\(name)+\(Self.hex(keyID))+\(Data([0x01] + Array(publicKey.rawRepresentation)).base64EncodedString())"
    }

    /// True when `signature` (64 bytes) signs `body` with this key.
    public func isValid(signature: some DataProtocol, for body: String) -> Bool {
        publicKey.isValidSignature(Data(signature), for: Data(body.utf8))
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// Equal when name and public key are equal.
    public static func == (lhs: NoteVerifier, rhs: NoteVerifier) -> Bool {
        lhs.name == rhs.name && lhs.publicKey.rawRepresentation == rhs.publicKey.rawRepresentation
    }
}

/// Signs C2SP notes with an Ed25519 private key.
public struct NoteSigner: Sendable {
    /// The Ed25519 private key.
    public let privateKey: Curve25519.Signing.PrivateKey
    /// The verifier for this key's signatures.
    public let verifier: NoteVerifier

    /// A signer with key name `name` (the log's origin).
    public init(name: String, privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
        self.verifier = NoteVerifier(name: name, publicKey: privateKey.publicKey)
    }

    /// The signed note: body, a blank line, and one signature line `— name base64(id ‖ sig)`.
    public func sign(_ body: String) throws -> String {
        let signature = try privateKey.signature(for: Data(body.utf8))
        let blob = Data(verifier.keyID + Array(signature)).base64EncodedString()
        return body + "\n\u{2014} \(verifier.name) \(blob)\n"
    }
}

/// A signed note split into its body and signature lines.
public struct SignedNote: Sendable, Equatable {
    /// One signature line of a note.
    public struct Signature: Sendable, Equatable {
        /// The key name on the line.
        public var name: String
        /// The key ID (four bytes) that starts the signature blob.
        public var keyID: [UInt8]
        /// The signature bytes after the key ID.
        public var signature: [UInt8]
    }

    /// The signed text, ending in a newline.
    public var body: String
    /// The signature lines, in order.
    public var signatures: [Signature]

    /// Parses note text; nil when it is not a well-formed signed note.
    public init?(text: String) {
        guard text.utf8.count <= 1 << 20, let split = text.range(of: "\n\n", options: .backwards) else { return nil }
        body = String(text[..<split.lowerBound]) + "\n"
        let rest = text[split.upperBound...]
        guard rest.hasSuffix("\n") else { return nil }
        var parsed: [Signature] = []
        for line in rest.dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("\u{2014} ") else { return nil }
            let fields = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 2, let blob = Data(base64Encoded: String(fields[1])), blob.count >= 5 else { return nil }
            parsed.append(Signature(name: String(fields[0]), keyID: Array(blob.prefix(4)), signature: Array(blob.dropFirst(4))))
        }
        guard !parsed.isEmpty, !body.contains("\n\n") else { return nil }
        signatures = parsed
    }

    /// True when one signature line is by `verifier` and valid; other keys' lines are ignored.
    public func isSigned(by verifier: NoteVerifier) -> Bool {
        signatures.contains {
            $0.name == verifier.name && $0.keyID == verifier.keyID && verifier.isValid(signature: $0.signature, for: body)
        }
    }
}
