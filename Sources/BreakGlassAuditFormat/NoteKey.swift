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

    /// Parses note text; nil when it is not a well-formed signed note. Read by bytes, as C2SP notes are:
    /// lines end at `\n`, and no other control byte is allowed (as Go's `note.Open`).
    public init?(text: String) {
        let bytes = Array(text.utf8)
        let newline = UInt8(ascii: "\n")
        guard bytes.count <= 1 << 20, !bytes.contains(where: { ($0 < 0x20 && $0 != newline) || $0 == 0x7F }),
            let split = bytes.indices.dropLast().last(where: { bytes[$0] == newline && bytes[$0 + 1] == newline })
        else { return nil }
        let bodyBytes = bytes[...split]
        let rest = bytes[(split + 2)...]
        guard rest.last == newline, !zip(bodyBytes, bodyBytes.dropFirst()).contains(where: { $0 == newline && $1 == newline })
        else { return nil }
        let dash = Array("\u{2014} ".utf8)
        var parsed: [Signature] = []
        for line in rest.dropLast().split(separator: newline, omittingEmptySubsequences: false) {
            guard line.starts(with: dash) else { return nil }
            let fields = line.dropFirst(dash.count).split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count == 2, let blob = Data(base64Encoded: Data(fields[1])), blob.count >= 5 else { return nil }
            let name = String(decoding: fields[0], as: UTF8.self)
            parsed.append(Signature(name: name, keyID: Array(blob.prefix(4)), signature: Array(blob.dropFirst(4))))
        }
        guard !parsed.isEmpty else { return nil }
        body = String(decoding: bodyBytes, as: UTF8.self)
        signatures = parsed
    }

    /// True when one signature line is by `verifier` and valid; other keys' lines are ignored.
    public func isSigned(by verifier: NoteVerifier) -> Bool {
        signatures.contains {
            $0.name == verifier.name && $0.keyID == verifier.keyID && verifier.isValid(signature: $0.signature, for: body)
        }
    }
}
