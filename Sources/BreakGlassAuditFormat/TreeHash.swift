import CBreakGlassSHA256
import Crypto

/// A SHA-256 value held inline (no heap storage), for the hot loops that hash millions of leaves.
package struct TreeHash: Sendable, Equatable {
    private var words: (UInt64, UInt64, UInt64, UInt64)

    /// All zero bits (a placeholder, never a real hash).
    static let zero = TreeHash(words: (0, 0, 0, 0))

    private init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    /// The first 32 bytes of `bytes`; nil when there are fewer.
    init?(_ bytes: some Collection<UInt8>) {
        guard bytes.count >= 32 else { return nil }
        words = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { raw in
            for (index, byte) in bytes.prefix(32).enumerated() { raw[index] = byte }
        }
    }

    private init(_ digest: SHA256.Digest) {
        words = (0, 0, 0, 0)
        digest.withUnsafeBytes { source in
            withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source.prefix(32))) }
        }
    }

    package static func == (left: TreeHash, right: TreeHash) -> Bool {
        left.words.0 == right.words.0 && left.words.1 == right.words.1 && left.words.2 == right.words.2
            && left.words.3 == right.words.3
    }

    package var bytes: [UInt8] { withUnsafeBytes(of: words) { Array($0) } }

    /// Whether the one-call SHA-256 is available (OpenSSL, see `CBreakGlassSHA256`); without it every hash
    /// goes through the Swift `SHA256` API, with the same results.
    static let direct = breakglass_sha256_available() == 1

    /// SHA-256(0x00 ‖ entry).
    static package func leaf(_ entry: UnsafeRawBufferPointer) -> TreeHash {
        if direct, entry.count < directLeafLimit {
            // The prefix and the entry side by side (on the stack when it is small), hashed in one call.
            let hash: TreeHash? = withUnsafeTemporaryAllocation(byteCount: entry.count + 1, alignment: 8) { message in
                message[0] = 0x00
                if let base = entry.baseAddress {
                    UnsafeMutableRawBufferPointer(rebasing: message[1...]).copyMemory(
                        from: UnsafeRawBufferPointer(start: base, count: entry.count))
                }
                return oneCall(UnsafeRawBufferPointer(message))
            }
            if let hash { return hash }
        }
        return portableLeaf(entry)
    }

    /// SHA-256(0x00 ‖ entry) through the Swift API.
    static func portableLeaf(_ entry: UnsafeRawBufferPointer) -> TreeHash {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0x00)) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: entry)
        return TreeHash(hasher.finalize())
    }

    /// Entries shorter than this are copied behind their prefix for one-call hashing.
    static let directLeafLimit = 4096

    /// The one-call SHA-256 of `message`; nil when OpenSSL could not compute it.
    private static func oneCall(_ message: UnsafeRawBufferPointer) -> TreeHash? {
        var hash = TreeHash.zero
        let done = withUnsafeMutableBytes(of: &hash.words) { digest in
            breakglass_sha256(message.baseAddress, message.count, digest.baseAddress)
        }
        return done == 1 ? hash : nil
    }

    /// SHA-256(0x00 ‖ entry).
    static package func leaf(_ entry: ArraySlice<UInt8>) -> TreeHash {
        entry.withUnsafeBytes { leaf($0) }
    }

    /// SHA-256(0x01 ‖ left ‖ right).
    static func node(_ left: TreeHash, _ right: TreeHash) -> TreeHash {
        if direct, let bytes = NodeInput.bytes {
            var input = NodeInput(left: left.words, right: right.words)
            let hash = withUnsafeBytes(of: &input) { oneCall(UnsafeRawBufferPointer(rebasing: $0[bytes])) }
            if let hash { return hash }
        }
        return portableNode(left, right)
    }

    /// SHA-256(0x01 ‖ left ‖ right) through the Swift API.
    static func portableNode(_ left: TreeHash, _ right: TreeHash) -> TreeHash {
        var hasher = SHA256()
        if let bytes = NodeInput.bytes {
            // The 65 input bytes side by side, hashed in one call.
            var input = NodeInput(left: left.words, right: right.words)
            withUnsafeBytes(of: &input) { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[bytes])) }
        } else {
            withUnsafeBytes(of: UInt8(0x01)) { hasher.update(bufferPointer: $0) }
            withUnsafeBytes(of: left.words) { hasher.update(bufferPointer: $0) }
            withUnsafeBytes(of: right.words) { hasher.update(bufferPointer: $0) }
        }
        return TreeHash(hasher.finalize())
    }

    /// 0x01 ‖ left ‖ right in one piece of memory: the prefix is the last byte of the first word.
    private struct NodeInput {
        var pad: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0)
        var prefix: UInt8 = 0x01
        var left: (UInt64, UInt64, UInt64, UInt64)
        var right: (UInt64, UInt64, UInt64, UInt64)

        /// Where the 65 bytes lie, if the compiler laid the fields out end to end (it does, but
        /// Swift does not promise it, so it is checked).
        static package let bytes: Range<Int>? = {
            guard let prefix = MemoryLayout<NodeInput>.offset(of: \.prefix),
                MemoryLayout<NodeInput>.offset(of: \.left) == prefix + 1,
                MemoryLayout<NodeInput>.offset(of: \.right) == prefix + 33
            else { return nil }
            return prefix..<prefix + 65
        }()
    }
}
