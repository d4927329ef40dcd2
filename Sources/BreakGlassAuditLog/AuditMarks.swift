import BreakGlassAuditFormat
import Foundation

/// Where the tree stood at recent checkpoints (oldest first), so that proofs for recent records need
/// to read only the records after one of them, and the few places for proof work.
struct AuditMarks: Sendable {
    private(set) var marks: [TreeMark]
    /// Proofs being computed (each reads segments on a thread of its own); more are refused.
    private(set) var proofsRunning = 0

    static let maximumMarks = 1024
    static let maximumProofs = 2

    init(first: TreeMark) {
        marks = [first]
    }

    /// Adds the mark of a new checkpoint. Past `maximumMarks` the older half is thinned (every other
    /// mark goes), so that the marks kept reach further back in time the longer the log runs, instead
    /// of covering only the latest stretch.
    mutating func add(_ mark: TreeMark) {
        if marks.count >= Self.maximumMarks {
            let half = marks.count / 2
            marks = marks[..<half].enumerated().filter { $0.offset.isMultiple(of: 2) }.map(\.element) + marks[half...]
        }
        marks.append(mark)
    }

    /// The latest mark taken at or before `date`; nil when older than every kept mark.
    func mark(before date: Date) -> TreeMark? {
        marks.last(where: { $0.time <= date })
    }

    /// The mark of the checkpoint of `size` records, when it is still kept.
    func mark(size: Int) -> TreeMark? {
        marks.last(where: { $0.tree.size == size })
    }

    /// Takes one of the few places for proof work; false when all are taken.
    mutating func beginProof() -> Bool {
        guard proofsRunning < Self.maximumProofs else { return false }
        proofsRunning += 1
        return true
    }

    mutating func endProof() {
        proofsRunning = max(0, proofsRunning - 1)
    }
}
