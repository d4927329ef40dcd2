import BreakGlassAuditFormat

/// A tree known by the frontier of its first `base.size` leaves and the leaf hashes after them:
/// enough for an RFC 9162 inclusion proof of any leaf after the frontier. Subtree hashes are
/// remembered, so that many proofs cost about one pass over the leaves.
final class RecentTree {
    let base: AppendOnlyTree
    let leaves: [MerkleTree.Hash]
    private var known: [Range<Int>: MerkleTree.Hash] = [:]

    init(base: AppendOnlyTree, leaves: [MerkleTree.Hash]) {
        self.base = base
        self.leaves = leaves
    }

    var size: Int { base.size + leaves.count }

    /// The root of leaves `range` as RFC 9162 defines it, or nil when the range needs leaves that
    /// only the frontier summarises (a proof of a leaf after the frontier never needs one).
    func hash(_ range: Range<Int>) -> MerkleTree.Hash? {
        if let hash = known[range] { return hash }
        let start = base.size
        if range == 0..<start { return base.root }
        var offset = 0
        for node in base.frontier {
            if offset == range.lowerBound && node.size == range.count { return node.hash }
            offset += node.size
        }
        guard range.count > 1 else {
            return range.lowerBound >= start && range.lowerBound < size ? leaves[range.lowerBound - start] : nil
        }
        guard range.upperBound > start, range.upperBound <= size else { return nil }
        let split = MerkleTree.largestPowerOfTwo(below: range.count)
        guard let left = hash(range.lowerBound..<(range.lowerBound + split)),
            let right = hash((range.lowerBound + split)..<range.upperBound)
        else { return nil }
        let hash = MerkleTree.nodeHash(left, right)
        known[range] = hash
        return hash
    }

    /// The audit path of leaf `index` (which must come after the frontier), leaf upwards.
    func inclusionProof(index: Int) -> [MerkleTree.Hash]? {
        guard index >= base.size, index < size else { return nil }
        return path(index, 0..<size)
    }

    private func path(_ index: Int, _ range: Range<Int>) -> [MerkleTree.Hash]? {
        guard range.count > 1 else { return [] }
        let split = range.lowerBound + MerkleTree.largestPowerOfTwo(below: range.count)
        if index < split {
            guard let below = path(index, range.lowerBound..<split), let sibling = hash(split..<range.upperBound) else { return nil }
            return below + [sibling]
        }
        guard let below = path(index, split..<range.upperBound), let sibling = hash(range.lowerBound..<split) else { return nil }
        return below + [sibling]
    }
}
