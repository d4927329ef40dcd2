import BreakGlassCore
import BreakGlassTestSupport
import Crypto
import Foundation
import Testing

@testable import BreakGlassAuditFormat
@testable import BreakGlassAuditLog

/// The fast verification path: runs of records folded into subtrees on all cores must give the
/// same tree, and the same messages, as reading the records one by one.
@Suite struct AuditScanTests {
    static func leaves(_ count: Int) -> [TreeHash] {
        (0..<count).map { index in TreeHash.leaf(Array("record \(index)".utf8)[...]) }
    }

    @Test func subtreesAppendedWholeGiveTheSameTree() {
        let all = Self.leaves(200)
        for start in 0..<70 {
            var base = AppendOnlyTree()
            for leaf in all[..<start] { base.append(leaf: leaf) }
            for count in [0, 1, 2, 3, 5, 8, 13, 64, 65, 100, 130] where start + count <= all.count {
                var byLeaf = base
                for leaf in all[start..<start + count] { byLeaf.append(leaf: leaf) }
                var bySubtree = base
                var run = Array(all[start..<start + count])
                let subtrees = run.withUnsafeMutableBufferPointer { SegmentScan.subtrees($0, start: start) }
                #expect(subtrees.map(\.size).reduce(0, +) == count)
                for subtree in subtrees {
                    #expect(bySubtree.size % subtree.size == 0, "start \(start) count \(count)")
                    bySubtree.append(subtree: subtree.hash, size: subtree.size)
                }
                #expect(bySubtree.size == byLeaf.size)
                #expect(bySubtree.root == byLeaf.root, "start \(start) count \(count)")
            }
        }
    }

    @Test func oneCallHashesMatchTheSwiftAPI() {
        // The one-call SHA-256 (OpenSSL's EVP) is available (so verify runs at full speed), and it and the Swift
        // API give the RFC 6962 hashes for entries on both sides of the copy limit.
        #expect(TreeHash.direct)
        var generator = SystemRandomNumberGenerator()
        let limit = TreeHash.directLeafLimit
        for length in [0, 1, 54, 55, 56, 63, 64, 65, 300, limit - 2, limit - 1, limit, limit + 1, 70_000] {
            let entry = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let expected = Array(SHA256.hash(data: [0x00] + entry))
            let direct = entry.withUnsafeBytes { TreeHash.leaf($0) }
            let portable = entry.withUnsafeBytes { TreeHash.portableLeaf($0) }
            #expect(direct.bytes == expected, "length \(length)")
            #expect(portable.bytes == expected, "length \(length)")
            let left = TreeHash.leaf(entry[...])
            let right = TreeHash.leaf(Array(entry.reversed())[...])
            let node = Array(SHA256.hash(data: [0x01] + left.bytes + right.bytes))
            #expect(TreeHash.node(left, right).bytes == node)
            #expect(TreeHash.portableNode(left, right).bytes == node)
        }
    }

    /// Each thread keeps its own OpenSSL context: hashes made on many threads at once are all right.
    @Test func oneCallHashesAreRightOnManyThreadsAtOnce() async {
        let wrong = await withTaskGroup(of: Int.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var wrong = 0
                    for index in 0..<2000 {
                        let entry = Array("record \(task) \(index)".utf8)
                        if TreeHash.leaf(entry[...]).bytes != Array(SHA256.hash(data: [0x00] + entry)) { wrong += 1 }
                    }
                    return wrong
                }
            }
            return await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }

    @Test func piecesEndAtTaskBoundariesAndAtCuts() {
        let task = SegmentScan.framesPerTask
        let tree = SegmentScan.TreeWork(firstSequence: 3000, gateway: [], cuts: [0, 3000, 3001, 2 * task, 6000, 9000])
        let ranges = SegmentScan.pieceRanges(count: 5000, tree: tree)
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == 5000)
        for (earlier, later) in zip(ranges, ranges.dropFirst()) { #expect(earlier.upperBound == later.lowerBound) }
        let ends = ranges.map { $0.upperBound + 3000 }
        #expect(ends == [3001, 2 * task, 6000, 3 * task, 8000])
        #expect(ranges.allSatisfy { !$0.isEmpty && $0.count <= task })
        #expect(SegmentScan.pieceRanges(count: 0, tree: tree).isEmpty)
    }

    /// Frames indexed piece by piece as a segment is read give the same scan as the whole buffer,
    /// for a clean segment and for each kind of damage at its end.
    @Test func framesIndexedWhileReadingMatchTheWholeBuffer() throws {
        var clean = SegmentFormat.header(firstSequence: 7)
        for index in 0..<3000 {
            SegmentFormat.appendFrame(Array("record \(index) ".utf8) + [UInt8](repeating: 0x61, count: index % 700), to: &clean)
        }
        let zeros = [UInt8](repeating: 0, count: 5000)
        let endings: [(String, [UInt8])] = [
            ("preallocated", zeros),
            ("zero length then data", zeros + [1, 2, 3]),
            ("impossible length", [0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0] + zeros),
            ("header cut short", [0, 0, 1]),
            ("frame cut short", [0, 0, 1, 0, 9, 9, 9, 9, 0x61]),
        ]
        let folder = try TestDirectory("frames")
        defer { folder.remove() }
        for (label, ending) in endings {
            let bytes = clean + ending
            let whole = try SegmentScan.scan(bytes, name: "s", from: SegmentFormat.headerSize)
            for piece in [7, 300, 4096, 65536] {
                var index = SegmentScan.FrameIndex(start: SegmentFormat.headerSize)
                for end in stride(from: piece, through: bytes.count + piece - 1, by: piece) {
                    bytes[..<min(end, bytes.count)].withUnsafeBytes { index.advance($0, segmentSize: bytes.count) }
                }
                // The pieces alone found every frame; the scan only judges where they stopped.
                #expect(index.frames.map(\.offset) == whole.frames.map(\.offset), "\(label), index of pieces of \(piece)")
                let pieced = try SegmentScan.scan(bytes, name: "s", from: SegmentFormat.headerSize, index: index)
                #expect(pieced.frames.map(\.offset) == whole.frames.map(\.offset), "\(label), pieces of \(piece)")
                #expect(pieced.damage?.offset == whole.damage?.offset && pieced.damage?.reason == whole.damage?.reason, "\(label)")
                #expect(pieced.end == whole.end, "\(label)")
            }
            // The reader's own pieces, from a file.
            let path = folder.file("segment")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            var none: [UInt8]? = nil
            let (read, index) = try SegmentPrefetcher.read(.init(path: path, name: "s", limit: nil, start: 16), reusing: &none).get()
            #expect(read == bytes)
            #expect(index.frames.map(\.offset) == whole.frames.map(\.offset), "\(label), index from a file")
            let fromFile = try SegmentScan.scan(read, name: "s", index: index)
            #expect(fromFile.frames.map(\.offset) == whole.frames.map(\.offset), "\(label), from a file")
            #expect(fromFile.damage?.reason == whole.damage?.reason, "\(label), from a file")
            // Resuming past records already checked: the bytes before `start` are skipped (a gap
            // in the buffer that is never read) and indexing starts at `start`.
            let start = whole.frames[1000].offset
            let (resumed, resumedIndex) = try SegmentPrefetcher.read(.init(path: path, name: "s", limit: nil, start: start), reusing: &none)
                .get()
            #expect(resumed.count == bytes.count && resumed[start...] == bytes[start...])
            #expect(resumedIndex.frames.map(\.offset) == whole.frames[1000...].map(\.offset), "\(label), resumed")
            let resumedScan = try SegmentScan.scan(resumed, name: "s", from: start, index: resumedIndex)
            #expect(resumedScan.frames.map(\.offset) == whole.frames[1000...].map(\.offset), "\(label), resumed")
            #expect(resumedScan.damage?.reason == whole.damage?.reason, "\(label), resumed")
        }
        #expect(try SegmentScan.scan(clean + zeros, name: "s").frames.count == 3000)
        #expect(clean.count > 2 * FileIO.readPiece)
    }

    @Test func recordMatchingIsExact() {
        let record = Array(#"{"event":"x","gateway":"gw-1","seq":42,"v":1}"#.utf8)
        record.withUnsafeBytes { bytes in
            #expect(FastRecordFields.matches(bytes, sequence: 42, gateway: Array("gw-1".utf8)))
            #expect(!FastRecordFields.matches(bytes, sequence: 41, gateway: Array("gw-1".utf8)))
            #expect(!FastRecordFields.matches(bytes, sequence: 42, gateway: Array("gw-".utf8)))
            #expect(!FastRecordFields.matches(bytes, sequence: 42, gateway: Array("gw-12".utf8)))
            #expect(FastRecordFields(bytes) == FastRecordFields(sequence: 42, gateway: "gw-1"))
        }
        let escaped = Array(#"{"gateway":"gw\"1","seq":42,"v":1}"#.utf8)
        escaped.withUnsafeBytes { bytes in
            #expect(!FastRecordFields.matches(bytes, sequence: 42, gateway: Array("gw".utf8)))
            #expect(FastRecordFields(bytes) == nil)
        }
    }

    /// Writes `batches` batches of `size` events from 8 writers, with a pause after each for a
    /// checkpoint (so checkpoints fall at many sizes), then closes the log.
    static func write(_ log: AuditLog, batches: Int, of size: Int) async throws {
        for batch in 0..<batches {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        for index in stride(from: batch * size + writer, to: (batch + 1) * size, by: 8) {
                            _ = try await log.append(AuditLogTests.event(index))
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await Task.sleep(for: .milliseconds(60))
        }
        await log.close()
    }

    /// Many small segments with checkpoints between and across them: the root verify computes
    /// from subtrees is the RFC 6962 root of the records, computed here from first principles.
    @Test func multiSegmentLogVerifiesToTheRootOfItsRecords() async throws {
        let fixture = try AuditLogTests.Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open(segmentSize: 64 << 10)
        try await Self.write(log, batches: 6, of: 500)
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        #expect(Set(entries.map(\.segment)).count > 5)
        let report = try fixture.verify()
        #expect(report.records == 3000)
        #expect(report.checkpointsChecked > 3)
        let leaves = entries.map { Array(SHA256.hash(data: [0x00] + $0.bytes)) }
        #expect(report.root == MerkleTree.root(leaves[...]))
    }

    /// A record from another log in the middle of a large segment: its run is read record by
    /// record, so the message names it, and a log with checkpoints at many sizes still verifies.
    @Test func recordFromAnotherLogInALargeSegmentIsNamed() async throws {
        let fixture = try AuditLogTests.Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open(segmentSize: 8 << 20)
        try await Self.write(log, batches: 10, of: 700)
        let report = try fixture.verify()
        #expect(report.records == 7000)
        #expect(report.checkpointsChecked > 2)
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        let entry = entries[4321]
        let name = Array(#""gateway":"audit-test""#.utf8)
        var payload = entry.bytes
        let position = try #require(AuditLogTests.find(name, in: payload))
        payload.replaceSubrange(position + name.count - 5..<position + name.count - 1, with: Array("xxxx".utf8))
        bytes.replaceSubrange(entry.offset..<entry.offset + 8 + payload.count, with: SegmentFormat.frame(payload))
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.segment))
        var text: String?
        do {
            _ = try fixture.verify()
        } catch {
            text = error.message
        }
        #expect(text == "segment 00000001.seg offset \(entry.offset): record 4321 is from log audit-xxxx, not audit-test")
    }

    /// A segment header whose first sequence number does not fit an Int is damage with a clear error,
    /// for the reader, the verifier and the writer's recovery alike. Found by FuzzAuditSegment: before
    /// the fix the conversion trapped and took the process down.
    @Test func aFirstSequenceBeyondIntIsDamageNotACrash() async throws {
        let fixture = try AuditLogTests.Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open()
        try await Self.write(log, batches: 1, of: 3)
        await log.close()
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        bytes.replaceSubrange(8..<16, with: [0xFF, 0xFF, 0, 0, 0, 0, 0, 0])
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.segment))
        for attempt in ["read", "verify"] {
            var error: AuditLogError?
            do {
                if attempt == "read" {
                    _ = try AuditLogReader.read(directory: fixture.directory)
                } else {
                    _ = try fixture.verify()
                }
            } catch let caught {
                error = caught
            }
            #expect(error?.code == .corrupt, "\(attempt): \(String(describing: error))")
            #expect(error?.message.contains("first sequence number") == true, "\(attempt): \(String(describing: error))")
        }
        #expect(throws: AuditLogError.self) { _ = try fixture.open() }
    }

    /// Checkpoints and signed notes are read by bytes, as C2SP and Go's note verifier read them, and a
    /// control byte other than the line end is refused, as Go's `note.Open` refuses it: `\r\n` is no
    /// longer one character that hides a line end. Found by FuzzCheckpoint: before the fix an origin
    /// could hold `\r\nlog`, and a note whose body held a blank line after a `\r` parsed.
    @Test func checkpointsAndNotesAreReadByBytes() throws {
        let root = Data(repeating: 7, count: 32).base64EncodedString()
        #expect(Checkpoint(body: "fuzz.example/log\n4\n\(root)\n") != nil)
        #expect(Checkpoint(body: "fuzz.e/\r\nlog\n4\n\(root)\n") == nil)
        #expect(Checkpoint(body: "fuzz.e/\r\n4\n\(root)\n") == nil)
        let signer = NoteSigner(name: "fuzz.example/log", privateKey: Curve25519.Signing.PrivateKey())
        let note = try signer.sign("fuzz.example/log\n4\n\(root)\n")
        #expect(SignedNote(text: note)?.isSigned(by: signer.verifier) == true)
        let blob = Data(repeating: 1, count: 68).base64EncodedString()
        #expect(SignedNote(text: "fu=\n\r\n\n\u{2014} f \(blob)\n") == nil)
        #expect(SignedNote(text: "body\n\n\u{2014} f \(blob)\r\n") == nil)
    }
}
