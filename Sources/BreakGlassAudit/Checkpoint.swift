import Foundation

/// A C2SP `tlog-checkpoint` body: origin, tree size and root hash.
public struct Checkpoint: Sendable, Equatable {
    /// The log's origin line, which names the log.
    public var origin: String
    /// Number of records the checkpoint covers.
    public var size: Int
    /// Root hash of the tree over those records (32 bytes).
    public var root: MerkleTree.Hash

    /// A checkpoint of `size` records with root `root` for the log `origin`.
    public init(origin: String, size: Int, root: MerkleTree.Hash) {
        self.origin = origin
        self.size = size
        self.root = root
    }

    /// The note text that is signed: `origin\nsize\nbase64(root)\n`.
    public var body: String {
        "\(origin)\n\(size)\n\(Data(root).base64EncodedString())\n"
    }

    /// Parses a checkpoint body (extension lines are ignored); nil when malformed.
    public init?(body: String) {
        var lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 4, lines.last == "" else { return nil }
        lines.removeLast()
        let sizeText = lines[1]
        guard !lines[0].isEmpty, !lines[0].contains(" "), !lines[0].contains("+"),
            !sizeText.isEmpty, sizeText.allSatisfy({ $0.isASCII && $0.isNumber }), sizeText == "0" || !sizeText.hasPrefix("0"),
            let size = Int(sizeText), let root = Data(base64Encoded: String(lines[2])), root.count == 32
        else { return nil }
        self.init(origin: String(lines[0]), size: size, root: Array(root))
    }
}
