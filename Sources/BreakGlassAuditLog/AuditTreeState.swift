import BreakGlassAuditFormat
import Foundation

/// The writer's saved position, written with every checkpoint: the tree's frontier at the checkpoint's
/// size and where the next record goes. With it, start-up reads only the records after it instead of
/// re-hashing the whole log.
struct AuditTreeState: Codable, Equatable {
    struct Node: Codable, Equatable {
        var size: Int
        var hash: String
    }

    var size: Int
    var segment: Int
    var offset: Int
    var frontier: [Node]

    static func path(_ directory: String) -> String { directory + "/tree.state" }

    init(tree: AppendOnlyTree, segment: Int, offset: Int) {
        self.size = tree.size
        self.segment = segment
        self.offset = offset
        self.frontier = tree.frontier.map { Node(size: $0.size, hash: Data($0.hash).base64EncodedString()) }
    }

    /// The tree this state describes, or nil when it is malformed.
    var tree: AppendOnlyTree? {
        var nodes: [(size: Int, hash: MerkleTree.Hash)] = []
        for node in frontier {
            guard let hash = Data(base64Encoded: node.hash) else { return nil }
            nodes.append((node.size, Array(hash)))
        }
        guard let tree = AppendOnlyTree(frontier: nodes), tree.size == size else { return nil }
        return tree
    }

    static func load(_ directory: String) -> AuditTreeState? {
        guard let bytes = try? FileIO.read(path(directory), limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(AuditTreeState.self, from: Data(bytes))
    }

    func save(_ directory: String) throws(AuditLogError) {
        guard let data = try? JSONEncoder().encode(self) else { throw AuditLogError(.io, "cannot encode the tree state") }
        try FileIO.replaceAtomically(Self.path(directory), with: Array(data))
    }
}
