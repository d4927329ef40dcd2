import Crypto
import Foundation

/// RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification over SHA-256.
///
/// Leaf hash = SHA-256(0x00 ‖ entry); node hash = SHA-256(0x01 ‖ left ‖ right); the empty tree's
/// root is SHA-256 of nothing. Proofs are computed from the leaf hashes.
public enum MerkleTree {
    /// A SHA-256 hash (32 bytes).
    public typealias Hash = [UInt8]

    /// The hash of a leaf entry.
    public static func leafHash(_ entry: some DataProtocol) -> Hash {
        Array(entry).withUnsafeBytes { TreeHash.leaf($0).bytes }
    }

    /// The hash of an interior node.
    public static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        var hasher = SHA256()
        hasher.update(data: [0x01])
        hasher.update(data: left)
        hasher.update(data: right)
        return Array(hasher.finalize())
    }

    /// The root of the empty tree.
    public static let emptyRoot: Hash = Array(SHA256.hash(data: Data()))

    /// The root over `leaves` (leaf hashes).
    public static func root(_ leaves: ArraySlice<Hash>) -> Hash {
        switch leaves.count {
        case 0: return emptyRoot
        case 1: return leaves[leaves.startIndex]
        default:
            let split = largestPowerOfTwo(below: leaves.count)
            let middle = leaves.startIndex + split
            return nodeHash(root(leaves[leaves.startIndex..<middle]), root(leaves[middle...]))
        }
    }

    /// The audit path for leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1), leaf upwards.
    public static func inclusionProof(index: Int, leaves: ArraySlice<Hash>) -> [Hash]? {
        guard index >= 0, index < leaves.count else { return nil }
        return path(index, leaves)
    }

    private static func path(_ index: Int, _ leaves: ArraySlice<Hash>) -> [Hash] {
        guard leaves.count > 1 else { return [] }
        let split = largestPowerOfTwo(below: leaves.count)
        let middle = leaves.startIndex + split
        if index < split {
            return path(index, leaves[leaves.startIndex..<middle]) + [root(leaves[middle...])]
        }
        return path(index - split, leaves[middle...]) + [root(leaves[leaves.startIndex..<middle])]
    }

    /// The consistency proof between the first `oldSize` leaves and all of `leaves` (RFC 9162 §2.1.4.1).
    public static func consistencyProof(oldSize: Int, leaves: ArraySlice<Hash>) -> [Hash]? {
        guard oldSize >= 0, oldSize <= leaves.count else { return nil }
        guard oldSize > 0, oldSize < leaves.count else { return [] }
        return subproof(oldSize, leaves, complete: true)
    }

    private static func subproof(_ m: Int, _ leaves: ArraySlice<Hash>, complete: Bool) -> [Hash] {
        let n = leaves.count
        if m == n { return complete ? [] : [root(leaves)] }
        let k = largestPowerOfTwo(below: n)
        let middle = leaves.startIndex + k
        if m <= k {
            return subproof(m, leaves[leaves.startIndex..<middle], complete: complete) + [root(leaves[middle...])]
        }
        return subproof(m - k, leaves[middle...], complete: false) + [root(leaves[leaves.startIndex..<middle])]
    }

    /// Checks an inclusion proof (RFC 9162 §2.1.3.2).
    public static func verifyInclusion(leafHash: Hash, index: Int, treeSize: Int, proof: [Hash], root: Hash) -> Bool {
        guard index >= 0, index < treeSize else { return false }
        var fn = index
        var sn = treeSize - 1
        var r = leafHash
        for p in proof {
            if sn == 0 { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == root
    }

    /// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
    public static func verifyConsistency(oldSize: Int, oldRoot: Hash, newSize: Int, newRoot: Hash, proof: [Hash]) -> Bool {
        guard oldSize >= 0, oldSize <= newSize else { return false }
        if oldSize == newSize { return proof.isEmpty && oldRoot == newRoot }
        if oldSize == 0 { return proof.isEmpty }
        guard !proof.isEmpty else { return false }
        var path = proof[...]
        if oldSize & (oldSize - 1) == 0 { path = [oldRoot] + proof }
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        guard let first = path.first else { return false }
        var fr = first
        var sr = first
        for c in path.dropFirst() {
            if sn == 0 { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return fr == oldRoot && sr == newRoot && sn == 0
    }

    /// The largest power of two strictly smaller than `n` (n > 1).
    static package func largestPowerOfTwo(below n: Int) -> Int {
        var k = 1
        while k << 1 < n { k <<= 1 }
        return k
    }
}

/// A Merkle tree that grows by appending; it keeps only the compact range of subtree roots, so
/// an append costs O(1) amortised and the root O(log n).
public struct AppendOnlyTree: Sendable {
    /// Roots of the perfect subtrees that make up the tree, largest first.
    private var nodes: [(size: Int, hash: TreeHash)] = []
    /// Number of leaves appended.
    public private(set) var size = 0

    /// An empty tree.
    public init() {}

    /// A tree that continues from a saved frontier; nil when the frontier is not one (sizes must
    /// be distinct powers of two, largest first, and hashes 32 bytes).
    public init?(frontier: [(size: Int, hash: MerkleTree.Hash)]) {
        var previous = Int.max
        for node in frontier {
            guard node.size > 0, node.size & (node.size - 1) == 0, node.size < previous, node.hash.count == 32,
                let hash = TreeHash(node.hash)
            else { return nil }
            previous = node.size
            nodes.append((node.size, hash))
        }
        self.size = frontier.reduce(0) { $0 + $1.size }
    }

    /// Roots of the perfect subtrees that make up the tree, largest first.
    public var frontier: [(size: Int, hash: MerkleTree.Hash)] { nodes.map { ($0.size, $0.hash.bytes) } }

    /// Appends the record `entry` (its leaf hash is computed here).
    public mutating func append(entry: some Collection<UInt8>) {
        let leaf = entry.withContiguousStorageIfAvailable { TreeHash.leaf(UnsafeRawBufferPointer($0)) }
        append(leaf: leaf ?? Array(entry).withUnsafeBytes { TreeHash.leaf($0) })
    }

    mutating package func append(leaf: TreeHash) {
        size += 1
        var node = (size: 1, hash: leaf)
        while let last = nodes.last, last.size == node.size {
            nodes.removeLast()
            node = (size: last.size * 2, hash: TreeHash.node(last.hash, node.hash))
        }
        nodes.append(node)
    }

    /// Appends a perfect subtree of `count` leaves (a power of two) at once; the tree's size must
    /// be a multiple of `count`, as it is when subtrees come from `SegmentScan.subtrees`.
    mutating package func append(subtree hash: TreeHash, size count: Int) {
        // SegmentScan only makes subtrees that start at a multiple of their size, and appends them
        // in order, so a misaligned one is a bug here, never a property of the log.
        precondition(count > 0 && count & (count - 1) == 0 && size % count == 0, "misaligned subtree")
        size += count
        var node = (size: count, hash: hash)
        while let last = nodes.last, last.size == node.size {
            nodes.removeLast()
            node = (size: last.size * 2, hash: TreeHash.node(last.hash, node.hash))
        }
        nodes.append(node)
    }

    /// The root of the whole tree.
    public var root: MerkleTree.Hash {
        guard var hash = nodes.last?.hash else { return MerkleTree.emptyRoot }
        for node in nodes.dropLast().reversed() { hash = TreeHash.node(node.hash, hash) }
        return hash.bytes
    }
}
