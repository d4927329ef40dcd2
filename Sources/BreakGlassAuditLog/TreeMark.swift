import BreakGlassAuditFormat
import Foundation

/// Where the log stood when a checkpoint was published: the tree's frontier and where the next
/// record goes. Proofs for later records need only this and the records after it.
struct TreeMark: Sendable {
    var time: Date
    var tree: AppendOnlyTree
    var segment: Int
    var offset: Int

    /// The start of a log that holds nothing yet.
    static let empty = TreeMark(time: .distantPast, tree: AppendOnlyTree(), segment: 1, offset: SegmentFormat.headerSize)

    var resumePoint: ResumePoint { ResumePoint(sequence: tree.size, segment: segment, offset: offset) }
}
