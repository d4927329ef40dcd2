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

    /// Parses a checkpoint body (extension lines are ignored); nil when malformed. Read by bytes: lines
    /// end at `\n`, and the origin holds no space, `+` or control byte.
    public init?(body: String) {
        var lines = body.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count >= 4, lines.last?.isEmpty == true else { return nil }
        lines.removeLast()
        let origin = lines[0]
        let sizeText = lines[1]
        guard !origin.isEmpty, !origin.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "+") }),
            !sizeText.isEmpty, sizeText.count <= 19, sizeText.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            sizeText.count == 1 || sizeText.first != UInt8(ascii: "0"),
            let size = Int(Substring(sizeText)), let root = Data(base64Encoded: Data(lines[2])), root.count == 32
        else { return nil }
        self.init(origin: String(Substring(origin)), size: size, root: Array(root))
    }
}
