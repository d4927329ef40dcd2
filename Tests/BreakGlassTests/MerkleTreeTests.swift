import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import Crypto
import Foundation
import Testing

@Suite struct MerkleTreeTests {
    static let entries: [[UInt8]] = [
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
    ].map(Self.bytes)

    /// RFC 6962 reference roots for the first 1…8 entries.
    static let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]

    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    static var leaves: [MerkleTree.Hash] { entries.map { MerkleTree.leafHash($0) } }

    @Test func referenceRoots() {
        #expect(MerkleTree.root([]) == Self.bytes("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        for size in 1...8 {
            #expect(MerkleTree.root(Self.leaves.prefix(size)) == Self.bytes(Self.roots[size - 1]), "size \(size)")
            var tree = AppendOnlyTree()
            for entry in Self.entries.prefix(size) { tree.append(entry: entry) }
            #expect(tree.root == Self.bytes(Self.roots[size - 1]))
        }
    }

    @Test func referenceProofs() {
        let leaves = Self.leaves
        let inclusion = MerkleTree.inclusionProof(index: 0, leaves: leaves[...])
        #expect(
            inclusion
                == [
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ].map(Self.bytes)
        )
        #expect(MerkleTree.consistencyProof(oldSize: 1, leaves: leaves[...]) == inclusion)
        #expect(
            MerkleTree.consistencyProof(oldSize: 6, leaves: leaves[...])
                == [
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ].map(Self.bytes)
        )
        #expect(
            MerkleTree.consistencyProof(oldSize: 2, leaves: leaves.prefix(5))
                == [
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ].map(Self.bytes)
        )
    }

    @Test func everyProofOfSmallTreesVerifiesAndTamperingFails() {
        let leaves = (0..<40).map { MerkleTree.leafHash(Array("entry \($0)".utf8)) }
        for size in 1...leaves.count {
            let tree = leaves.prefix(size)
            let root = MerkleTree.root(tree)
            for index in 0..<size {
                let proof = MerkleTree.inclusionProof(index: index, leaves: tree) ?? []
                #expect(MerkleTree.verifyInclusion(leafHash: leaves[index], index: index, treeSize: size, proof: proof, root: root))
                #expect(
                    !MerkleTree.verifyInclusion(leafHash: leaves[(index + 1) % 40], index: index, treeSize: size, proof: proof, root: root)
                        || size == 1 && index == 0 && leaves[1] == leaves[0])
                if var bad = Optional(proof), !bad.isEmpty {
                    bad[0][0] ^= 1
                    #expect(!MerkleTree.verifyInclusion(leafHash: leaves[index], index: index, treeSize: size, proof: bad, root: root))
                }
            }
            for old in 1...size {
                let proof = MerkleTree.consistencyProof(oldSize: old, leaves: tree) ?? []
                let oldRoot = MerkleTree.root(leaves.prefix(old))
                #expect(MerkleTree.verifyConsistency(oldSize: old, oldRoot: oldRoot, newSize: size, newRoot: root, proof: proof))
                if old < size {
                    let otherRoot = MerkleTree.root(leaves.suffix(old))
                    #expect(!MerkleTree.verifyConsistency(oldSize: old, oldRoot: otherRoot, newSize: size, newRoot: root, proof: proof))
                }
            }
        }
    }

    @Test func crc32cCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 300, 4099] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(CRC32C.checksum(bytes) == CRC32C.checksumBytewise(bytes), "length \(length)")
            // Both ways agree whichever one this CPU uses.
            #expect(bytes.withUnsafeBytes(CRC32C.checksumFromTables) == CRC32C.checksumBytewise(bytes), "length \(length)")
            if length > 1 { #expect(CRC32C.checksum(bytes[1...]) == CRC32C.checksumBytewise(bytes.dropFirst())) }
        }
        // Three at a time, of equal and of different lengths (the longer ones finish alone).
        for lengths in [(0, 0, 0), (1, 0, 9), (8, 8, 8), (300, 301, 302), (17, 4099, 64), (333, 7, 333)] {
            let three = [lengths.0, lengths.1, lengths.2].map { length in
                (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            }
            let sums = three[0].withUnsafeBytes { a in
                three[1].withUnsafeBytes { b in three[2].withUnsafeBytes { c in CRC32C.checksums(a, b, c) } }
            }
            #expect([sums.0, sums.1, sums.2] == three.map(CRC32C.checksumBytewise), "lengths \(lengths)")
        }
    }

    @Test func signedCheckpointNotes() throws {
        let key = Curve25519.Signing.PrivateKey()
        let signer = NoteSigner(name: "demo-gateway", privateKey: key)
        let checkpoint = Checkpoint(origin: "demo-gateway", size: 8, root: Self.bytes(Self.roots[7]))
        #expect(checkpoint.body == "demo-gateway\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n")
        let note = try signer.sign(checkpoint.body)
        #expect(note.hasPrefix(checkpoint.body + "\n\u{2014} demo-gateway "))
        let parsed = try #require(SignedNote(text: note))
        #expect(parsed.body == checkpoint.body)
        #expect(parsed.isSigned(by: signer.verifier))
        #expect(Checkpoint(body: parsed.body) == checkpoint)

        let keyString = signer.verifier.keyString
        #expect(keyString.hasPrefix("demo-gateway+"))
        let reparsed = try #require(NoteVerifier(keyString: keyString))
        #expect(reparsed == signer.verifier)
        #expect(NoteVerifier(keyString: keyString.replacingOccurrences(of: "demo-gateway+", with: "other+")) == nil)

        let stranger = NoteSigner(name: "demo-gateway", privateKey: Curve25519.Signing.PrivateKey())
        #expect(!parsed.isSigned(by: stranger.verifier))
        let tampered = try #require(SignedNote(text: note.replacingOccurrences(of: "\n8\n", with: "\n9\n")))
        #expect(!tampered.isSigned(by: signer.verifier))
        // Another key's extra signature line is ignored; ours still verifies.
        let cosigned = note + (try stranger.sign(checkpoint.body)).components(separatedBy: "\n\n")[1]
        #expect(SignedNote(text: cosigned)?.isSigned(by: signer.verifier) == true)
    }
}

@Suite struct AuditRecordTests {
    @Test func canonicalBytesRoundTrip() throws {
        let time = Date(timeIntervalSince1970: 1_800_000_000.123)
        let event = AuditEvent(
            kind: .grantDenied,
            time: time,
            fields: [
                "reason": .string("line\nbreak \"quoted\" back\\slash tab\t bell\u{07} é ✓ /path"),
                "count": .integer(-42),
                "amr": .strings(["pwd", "otp"]),
                "expires_at": .time(time),
            ]
        )
        let bytes = try AuditRecord(sequence: 7, gateway: "g", event: event).encoded()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(
            text.hasPrefix(
                "{\"amr\":[\"pwd\",\"otp\"],\"count\":-42,\"event\":\"grant.denied\",\"expires_at\":\"2027-01-15T08:00:00.123Z\","))
        #expect(text.contains("\\n") && text.contains("\\u0007") && text.contains("/path") && !text.contains(" \n"))
        let decoded = try AuditRecord(decoding: bytes)
        #expect(decoded.sequence == 7)
        #expect(decoded.event.fields["reason"] == event.fields["reason"])
        #expect(decoded.event.fields["count"] == .integer(-42))
        #expect(decoded.event.fields["amr"] == .strings(["pwd", "otp"]))
        #expect(abs(decoded.event.time.timeIntervalSince(time)) < 0.001)
        // Encoding is deterministic: the same record gives the same bytes (and so the same leaf).
        #expect(try AuditRecord(sequence: 7, gateway: "g", event: event).encoded() == bytes)
    }

    /// Random events, with keys that sort around the record's own (prefixes, non-ASCII, upper case)
    /// and strings with every kind of character, encode exactly as the format says: members in byte
    /// order of their keys, and only `"`, `\` and control characters escaped.
    @Test func canonicalBytesFollowTheFormatForRandomEvents() throws {
        let keys = [
            "a", "ab", "amr", "Z", "_x", "e", "event_id", "gateway2", "s", "se", "sequence", "t", "ti", "time0", "u", "v0", "é", "zz",
            // Keys that share their first 8 bytes or more (the encoder orders by those first).
            "sequence9", "sequenceZ", "sequence_", "bytes_in", "bytes_out", "bytes_in_", "éééé", "éééé2",
        ]
        let pieces = ["x", "path/to", "\"", "\\", "\n", "\r", "\t", "\u{08}", "\u{07}", "\u{7F}", "\u{1F}", "é", "✓", "🙂", " ", ""]
        var generator = SystemRandomNumberGenerator()
        func text() -> String {
            (0..<Int.random(in: 0...40, using: &generator)).map { _ in pieces.randomElement(using: &generator) ?? "" }.joined()
        }
        func quoted(_ string: String) -> String {
            var out: [UInt8] = [UInt8(ascii: "\"")]
            for byte in string.utf8 {
                switch byte {
                case UInt8(ascii: "\""): out += Array("\\\"".utf8)
                case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
                case 0x0A: out += Array("\\n".utf8)
                case 0x0D: out += Array("\\r".utf8)
                case 0x09: out += Array("\\t".utf8)
                case 0..<0x20, 0x7F: out += Array(String(format: "\\u%04x", byte).utf8)
                default: out.append(byte)
                }
            }
            return String(decoding: out + [UInt8(ascii: "\"")], as: UTF8.self)
        }
        for round in 0..<300 {
            let time = Date(timeIntervalSince1970: Double.random(in: 0..<4_000_000_000, using: &generator))
            var fields: [String: AuditValue] = [:]
            var expected: [(key: String, json: String)] = [
                ("v", "1"), ("seq", "\(round)"), ("time", quoted(AuditRecord.formatTime(time))), ("gateway", quoted("gw-\(round)")),
                ("event", quoted("test.event")),
            ]
            for key in keys.shuffled(using: &generator).prefix(Int.random(in: 0...keys.count, using: &generator)) {
                switch Int.random(in: 0..<4, using: &generator) {
                case 0:
                    let value = text()
                    fields[key] = .string(value)
                    expected.append((key, quoted(value)))
                case 1:
                    let value = Int64.random(in: Int64.min...Int64.max, using: &generator)
                    fields[key] = .integer(value)
                    expected.append((key, "\(value)"))
                case 2:
                    let value = (0..<Int.random(in: 0...3, using: &generator)).map { _ in text() }
                    fields[key] = .strings(value)
                    expected.append((key, "[" + value.map(quoted).joined(separator: ",") + "]"))
                default:
                    fields[key] = .time(time)
                    expected.append((key, quoted(AuditRecord.formatTime(time))))
                }
            }
            // Fields named like the record's own members are left out.
            fields["seq"] = .integer(-1)
            fields["v"] = .string("2")
            expected.sort { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            let json = "{" + expected.map { quoted($0.key) + ":" + $0.json }.joined(separator: ",") + "}"
            let event = AuditEvent(kind: AuditEvent.Kind(rawValue: "test.event"), time: time, fields: fields)
            let bytes = try AuditRecord(sequence: round, gateway: "gw-\(round)", event: event).encoded()
            #expect(String(decoding: bytes, as: UTF8.self) == json)
            #expect(try JSONSerialization.jsonObject(with: Data(bytes)) is [String: Any])
        }
    }
}
