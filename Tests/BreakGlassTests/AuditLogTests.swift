import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassTestSupport
import Crypto
import Foundation
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct AuditLogTests {
    static let origin = "audit-test"

    struct Fixture {
        let folder: TestDirectory
        let signer: NoteSigner
        var directory: String { folder.file("log") }

        init() throws {
            folder = try TestDirectory("audit")
            signer = NoteSigner(name: AuditLogTests.origin, privateKey: Curve25519.Signing.PrivateKey())
        }

        func open(segmentSize: Int = 256 << 10, mirrors: [String] = [], submitDelay: Duration = .milliseconds(2)) throws -> AuditLog {
            let logger = TestLog().logger(label: "audit-test", level: .critical)
            let options = AuditLogOptions(
                segmentSize: segmentSize, reserve: 16 << 10, submitDelay: submitDelay, checkpointInterval: .milliseconds(50),
                mirrors: mirrors)
            return try AuditLog.open(directory: directory, origin: AuditLogTests.origin, signer: signer, options: options, logger: logger)
        }

        /// A closed log of `count` grant events (and a final checkpoint).
        func written(_ count: Int, segmentSize: Int = 256 << 10, mirrors: [String] = []) async throws {
            let log = try open(segmentSize: segmentSize, mirrors: mirrors)
            for index in 0..<count { _ = try await log.append(AuditLogTests.event(index)) }
            await log.close()
        }

        func verify(trusted: String? = nil) throws(AuditLogError) -> AuditVerifier.Report {
            try AuditVerifier.verify(directory: directory, verifier: signer.verifier, trustedCheckpoint: trusted)
        }

        var segment: String { directory + "/segments/00000001.seg" }
    }

    /// Opens the log and waits for it to stop on its own (start-up or the background check); returns why.
    static func stopReason(_ fixture: Fixture) async -> String? {
        let log: AuditLog
        do {
            log = try fixture.open()
        } catch let error as AuditLogError {
            return error.message
        } catch {
            return "\(error)"
        }
        defer { Task { await log.close() } }
        for _ in 0..<200 {
            if case .failed(let why) = log.health { return why }
            try? await Task.sleep(for: .milliseconds(25))
        }
        return nil
    }

    /// Records nobody waits for wait for company (`submitDelay`), but never hold up a caller that
    /// waits for its own record or a checkpoint: those are written at once, with them.
    @Test func submittedRecordsWaitForCompanyButNotForAWaitingCaller() async throws {
        let fixture = try Fixture()
        let log = try fixture.open(submitDelay: .seconds(60))
        _ = try await log.append(Self.event(0))
        for index in 1...5 { log.submit(Self.event(index)) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(try AuditLogReader.read(directory: fixture.directory).entries.count == 1)
        let waiting = Task { try await log.append(Self.event(6)) }
        #expect(try await Self.waitForRecords(7, in: fixture))
        #expect(try await waiting.value == 6)
        for index in 7...9 { log.submit(Self.event(index)) }
        _ = try await log.checkpoint()
        #expect(try AuditLogReader.read(directory: fixture.directory).entries.count == 10)
        await log.close()
        #expect(try fixture.verify().records == 10)
    }

    /// Polls the segment files (10 s at most, far below the delay under test) for `count` records.
    static func waitForRecords(_ count: Int, in fixture: Fixture) async throws -> Bool {
        for _ in 0..<1000 {
            if try AuditLogReader.read(directory: fixture.directory).entries.count == count { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    static func event(_ index: Int) -> AuditEvent {
        AuditEvent(
            kind: .grantIssued,
            time: Date(timeIntervalSince1970: 1_800_000_000 + Double(index)),
            fields: ["session": .string(String(format: "%032x", index)), "user": .string("user\(index % 7)"), "pathway": .string("db")]
        )
    }

    func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as AuditLogError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func groupCommitAssignsSequenceAndSurvivesReopen() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open()
        let sequences = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<3000 { group.addTask { try await log.append(Self.event(index)) } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(sequences.sorted() == Array(0..<3000))
        let note = try await log.checkpoint()
        #expect(note.hasPrefix("audit-test\n3000\n"))
        await log.close()
        // 3000 records of ~200 bytes need more than one 256 KiB segment.
        let segments = try FileManager.default.contentsOfDirectory(atPath: fixture.directory + "/segments")
        #expect(segments.count >= 2)
        let report = try fixture.verify()
        #expect(report.records == 3000)
        #expect(report.checkpointsChecked >= 2)

        let reopened = try fixture.open()
        #expect(reopened.size == 3000)
        #expect(try await reopened.append(Self.event(3000)) == 3000)
        await reopened.close()
        #expect(try fixture.verify().records == 3001)
        #expect(FileManager.default.fileExists(atPath: fixture.directory + "/audit-key.pub"))
    }

    /// A batch larger than one write (4 MiB) goes out in several writes, each flushed and then
    /// acknowledged: every caller gets the sequence number of its own record.
    @Test func batchesLargerThanOneWriteKeepEveryRecordInPlace() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open(segmentSize: 64 << 20)
        let padding = String(repeating: "p", count: 60_000)
        // Events submitted without waiting keep the writer busy while the callers' records pile up.
        for index in 300..<400 {
            var event = Self.event(index)
            event.fields["padding"] = .string(padding)
            log.submit(event)
        }
        let sequences = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for index in 0..<300 {
                group.addTask {
                    var event = Self.event(index)
                    event.fields["padding"] = .string(padding)
                    return (index, try await log.append(event))
                }
            }
            return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
        }
        await log.close()
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        #expect(entries.count == 400)
        // The submitted events in the order they were submitted, each caller's record where its
        // sequence number says.
        let submitted = entries.filter { entry in !sequences.values.contains(entry.sequence) }
        #expect(submitted.map(\.record?.event.fields["session"]) == (300..<400).map { .string(String(format: "%032x", $0)) })
        for (index, sequence) in sequences {
            #expect(entries[sequence].record?.event.fields["session"] == .string(String(format: "%032x", index)), "record \(sequence)")
        }
        #expect(try fixture.verify().records == 400)
    }

    /// Appending callers frame their records for the sequence number they are queued under. An
    /// event dropped ahead of them (too large to record) shifts those numbers, and the writer then
    /// frames the records again: every caller still gets its own record's number, none is missing.
    @Test func recordsQueuedBehindADroppedEventKeepTheirOwnNumbers() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open()
        var sequences: [Int: Int] = [:]
        for round in 0..<5 {
            var huge = Self.event(10_000 + round)
            huge.fields["padding"] = .string(String(repeating: "h", count: AuditRecord.maximumSize))
            log.submit(huge)
            let numbers = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for index in round * 20..<(round + 1) * 20 {
                    group.addTask { (index, try await log.append(Self.event(index))) }
                }
                return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
            }
            sequences.merge(numbers) { first, _ in first }
        }
        await log.close()
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        #expect(entries.count == 100)
        #expect(Set(sequences.values) == Set(0..<100))
        for (index, sequence) in sequences where sequence < entries.count {
            #expect(entries[sequence].record?.event.fields["session"] == .string(String(format: "%032x", index)), "record \(sequence)")
        }
        #expect(try fixture.verify().records == 100)
    }

    /// The rest of a segment is written full of zeros ahead of the writer (so that flushes carry
    /// only data), and the writer never writes where the zeros are still to come: records written
    /// right behind the first piece, across later pieces, and after a reopen (zeroing from the middle
    /// of a segment) all survive.
    @Test func segmentsAreZeroFilledAheadWithoutLosingARecord() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open(segmentSize: 8 << 20)
        let padding = String(repeating: "z", count: 2_000)
        // Many writers at once, so that the first writes race the first piece of zeros.
        func appendConcurrently(_ range: Range<Int>) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in range {
                    group.addTask {
                        var event = Self.event(index)
                        event.fields["padding"] = .string(padding)
                        _ = try await log.append(event)
                    }
                }
                try await group.waitForAll()
            }
        }
        // About 5.3 MB: the zeros (kept 4 MiB ahead of the writer) reach the end of the 8 MiB segment.
        try await appendConcurrently(0..<2_400)
        // Where the file system keeps allocated space as unwritten extents (ext4, XFS), none is
        // left once the zeros have gone ahead to the end of the segment.
        if Self.unwrittenExtents(fixture.segment) != nil {
            var left = Self.unwrittenExtents(fixture.segment)
            for _ in 0..<400 where left != 0 {
                try await Task.sleep(for: .milliseconds(25))
                left = Self.unwrittenExtents(fixture.segment)
            }
            #expect(left == 0, "the segment still has \(left ?? -1) unwritten extents")
        }
        await log.close()
        let reopened = try fixture.open(segmentSize: 8 << 20)
        for index in 2_400..<2_500 { _ = try await reopened.append(Self.event(index)) }
        await reopened.close()
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        #expect(entries.count == 2_500)
        let sessions = entries.compactMap { entry -> String? in
            guard case .string(let session) = entry.record?.event.fields["session"] else { return nil }
            return session
        }
        #expect(Set(sessions) == Set((0..<2_500).map { String(format: "%032x", $0) }))
        #expect(try fixture.verify().records == 2_500)
    }

    /// Extents of a file that are allocated but marked unwritten (FS_IOC_FIEMAP); nil when the file
    /// system does not map extents (tmpfs).
    static func unwrittenExtents(_ path: String) -> Int? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        let capacity = 512
        let (headerSize, extentSize, flagsOffset) = (32, 56, 40)
        var buffer = [UInt8](repeating: 0, count: headerSize + extentSize * capacity)
        let status: Int32 = buffer.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return -1 }
            raw.storeBytes(of: UInt64.max, toByteOffset: 8, as: UInt64.self)  // fm_length
            raw.storeBytes(of: UInt32(1), toByteOffset: 16, as: UInt32.self)  // FIEMAP_FLAG_SYNC
            raw.storeBytes(of: UInt32(capacity), toByteOffset: 24, as: UInt32.self)  // fm_extent_count
            return ioctl(fd, 0xC020_660B, base)  // FS_IOC_FIEMAP
        }
        guard status == 0 else { return nil }
        return buffer.withUnsafeBytes { raw in
            let mapped = Int(raw.load(fromByteOffset: 20, as: UInt32.self))
            return (0..<min(mapped, capacity)).filter { index in
                raw.load(fromByteOffset: headerSize + extentSize * index + flagsOffset, as: UInt32.self) & 0x800 != 0  // UNWRITTEN
            }.count
        }
    }

    @Test func tornTailIsTruncatedAndRecorded() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(5)
        let contents = try AuditLogReader.read(directory: fixture.directory)
        let end = try #require(contents.lastSegment?.end)
        // A half-written frame: a length and CRC with only part of the payload.
        let handle = try #require(FileHandle(forUpdatingAtPath: fixture.segment))
        try handle.seek(toOffset: UInt64(end))
        try handle.write(contentsOf: Data([0, 0, 0, 200, 1, 2, 3, 4] + Array(repeating: UInt8(ascii: "x"), count: 50)))
        try handle.close()
        #expect(try fixture.verify().notes.contains { $0.contains("interrupted write") })

        let log = try fixture.open()
        #expect(log.recoveredBytes == 58)
        _ = try await log.checkpoint()
        await log.close()
        let records = try AuditLogReader.read(directory: fixture.directory).entries.compactMap(\.record)
        #expect(records.count == 6)
        #expect(records.last?.event.kind == .auditRecovered)
        #expect(records.last?.event.fields["truncated_bytes"] == .integer(58))
        #expect(try fixture.verify().records == 6)
    }

    @Test func flippedByteIsCaughtByItsCRC() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(10)
        let contents = try AuditLogReader.read(directory: fixture.directory)
        let third = contents.entries[3]
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        bytes[third.offset + 8 + 20] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.segment))
        let text = message { _ = try fixture.verify() }
        #expect(text == "segment 00000001.seg offset \(third.offset): the record fails its CRC-32C check (altered or damaged)")
        // The gateway's log stops on it too (no audit, no access), naming the place.
        #expect(await Self.stopReason(fixture) == text)
    }

    /// Large segments are checked by several tasks at once; the first damaged record is still the
    /// one named, whichever task meets damage first.
    @Test func firstDamagedRecordOfALargeSegmentIsNamed() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open(segmentSize: 8 << 20)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<16 {
                group.addTask {
                    for index in stride(from: writer, to: 7000, by: 16) { _ = try await log.append(AuditLogTests.event(index)) }
                }
            }
            try await group.waitForAll()
        }
        await log.close()
        #expect(try fixture.verify().records == 7000)
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        #expect(Set(entries.map(\.segment)) == ["00000001.seg"])
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        for damaged in [6500, 2500] { bytes[entries[damaged].offset + 8 + 30] ^= 0x20 }
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.segment))
        let text = message { _ = try fixture.verify() }
        #expect(text == "segment 00000001.seg offset \(entries[2500].offset): the record fails its CRC-32C check (altered or damaged)")
    }

    @Test func alteredRecordWithRewrittenCRCIsCaughtByTheCheckpoint() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(10)
        let entry = try AuditLogReader.read(directory: fixture.directory).entries[4]
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        var payload = entry.bytes
        let user = Array("user4".utf8)
        let position = try #require(Self.find(user, in: payload))
        payload[position + 4] = UInt8(ascii: "9")
        let frame = SegmentFormat.frame(payload)
        bytes.replaceSubrange(entry.offset..<entry.offset + frame.count, with: frame)
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.segment))
        let text = message { _ = try fixture.verify() }
        #expect(text?.contains("records do not match") == true, "\(text ?? "verified")")
        // The gateway starts from its saved state and finds it in its background check of the records before.
        let reason = await Self.stopReason(fixture)
        #expect(reason?.contains("do not match the latest signed checkpoint") == true, "\(reason ?? "not stopped")")
    }

    @Test func removedAndSwappedRecordsBreakTheSequence() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(10)
        let entries = try AuditLogReader.read(directory: fixture.directory).entries
        let original = try Array(Data(contentsOf: URL(fileURLWithPath: fixture.segment)))
        func frameRange(_ index: Int) -> Range<Int> { entries[index].offset..<(entries[index].offset + 8 + entries[index].bytes.count) }

        var removed = original
        removed.removeSubrange(frameRange(5))
        removed += Array(repeating: 0, count: frameRange(5).count)
        try Data(removed).write(to: URL(fileURLWithPath: fixture.segment))
        #expect(
            message { _ = try fixture.verify() }
                == "segment 00000001.seg offset \(entries[5].offset): record has seq 6, expected 5 (a record was removed, added or reordered)"
        )

        var swapped = Array(original[..<frameRange(2).lowerBound])
        swapped += original[frameRange(3)]
        swapped += original[frameRange(2)]
        swapped += original[frameRange(3).upperBound...]
        try Data(swapped).write(to: URL(fileURLWithPath: fixture.segment))
        #expect(message { _ = try fixture.verify() }?.contains("record has seq 3, expected 2") == true)
    }

    @Test func truncatedTailAndRemovedSegmentAreCaught() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(3000)
        // Cut the whole last segment short at a frame boundary: the log now ends early but cleanly.
        let segments = try FileManager.default.contentsOfDirectory(atPath: fixture.directory + "/segments").sorted()
        let lastPath = fixture.directory + "/segments/" + (segments.last ?? "")
        let contents = try AuditLogReader.read(directory: fixture.directory)
        let lastEntries = contents.entries.filter { $0.segment == segments.last }
        let cut = try #require(lastEntries.dropFirst(3).first?.offset)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: lastPath)))
        let backup = bytes
        bytes.replaceSubrange(cut..<bytes.count, with: Array(repeating: 0, count: bytes.count - cut))
        try Data(bytes).write(to: URL(fileURLWithPath: lastPath))
        let truncated = message { _ = try fixture.verify() }
        #expect(truncated?.hasPrefix("log is shorter than") == true, "\(truncated ?? "verified")")
        #expect(truncated?.contains("rollback or truncation") == true)
        #expect(await Self.stopReason(fixture)?.contains("rollback or truncation") == true)
        try Data(backup).write(to: URL(fileURLWithPath: lastPath))
        #expect(try fixture.verify().records == 3000)

        // A segment in the middle goes missing.
        #expect(segments.count >= 3)
        try FileManager.default.removeItem(atPath: fixture.directory + "/segments/00000002.seg")
        #expect(message { _ = try fixture.verify() } == "segment 00000002.seg is missing (found 00000003.seg next)")
    }

    @Test func rollbackIsCaughtWithATrustedCheckpointAndTheMirror() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let mirror = fixture.folder.file("mirror")
        try await fixture.written(10, mirrors: [mirror])
        let older = fixture.folder.file("older")
        try FileManager.default.copyItem(atPath: fixture.directory, toPath: older)
        let log = try fixture.open(mirrors: [mirror])
        for index in 10..<20 { _ = try await log.append(Self.event(index)) }
        let trusted = try await log.checkpoint()
        await log.close()
        let saved = fixture.folder.file("trusted.note")
        try trusted.write(toFile: saved, atomically: true, encoding: .utf8)
        #expect(try fixture.verify(trusted: trusted).trustedCheckpointSize == 20)

        // Someone restores the whole folder to its older state: it is consistent with itself...
        try FileManager.default.removeItem(atPath: fixture.directory)
        try FileManager.default.moveItem(atPath: older, toPath: fixture.directory)
        #expect(try fixture.verify().records == 10)
        // ...but not with the checkpoint the auditor kept, nor with the mirror's copy.
        let kept = message { _ = try fixture.verify(trusted: trusted) }
        #expect(kept == "log is shorter than the trusted checkpoint (10 records, the checkpoint covers 20): rollback or truncation")
        let mirrored = try String(contentsOfFile: mirror + "/checkpoint", encoding: .utf8)
        #expect(mirrored == trusted)
        #expect(message { _ = try fixture.verify(trusted: mirrored) }?.contains("rollback or truncation") == true)
    }

    @Test func forgedCheckpointIsRejected() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        try await fixture.written(5)
        let contents = try AuditLogReader.read(directory: fixture.directory)
        let root = MerkleTree.root(contents.entries.map { MerkleTree.leafHash($0.bytes) }[...])
        let forger = NoteSigner(name: Self.origin, privateKey: Curve25519.Signing.PrivateKey())
        let forged = try forger.sign(Checkpoint(origin: Self.origin, size: 5, root: root).body)
        try forged.write(toFile: fixture.directory + "/checkpoint", atomically: true, encoding: .utf8)
        let text = message { _ = try fixture.verify() }
        #expect(
            text == "the latest checkpoint is not signed by key \(fixture.signer.verifier.keyString) (forged, or signed by another key)")
        #expect(throws: AuditLogError.self) { _ = try fixture.open() }
    }

    @Test func fullDiskRefusesGrantsKeepsDenialsAndResumesWhenSpaceReturns() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let mountPoint = fixture.folder.file("small-disk")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try await ProcessRunner.run("/bin/mount", ["-t", "tmpfs", "-o", "size=600k", "tmpfs", mountPoint])
        #expect(mount.status == 0, "tests run as root and mount a small tmpfs: \(mount.stderr)")
        defer { _ = try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: ["-l", mountPoint]).waitUntilExit() }
        // Space that another program holds, freed later.
        let filler = mountPoint + "/filler"
        try Data(repeating: 7, count: 200 << 10).write(to: URL(fileURLWithPath: filler))
        let logger = TestLog().logger(label: "audit-full", level: .critical)
        let options = AuditLogOptions(segmentSize: 128 << 10, reserve: 16 << 10, checkpointInterval: .seconds(60), warnFreeBytes: 1 << 20)
        let directory = mountPoint + "/log"
        let log = try AuditLog.open(directory: directory, origin: Self.origin, signer: fixture.signer, options: options, logger: logger)
        #expect(log.health != .ok)  // less free space than warn_free from the start

        // Access given while there was space: its record's place is taken now.
        #expect(log.reserve(.request))
        var acknowledged = 0
        var refusedGrant: (any Error)?
        while refusedGrant == nil && acknowledged < 10_000 {
            do {
                _ = try await log.append(Self.event(acknowledged))
                acknowledged += 1
            } catch {
                refusedGrant = error
            }
        }
        #expect(acknowledged > 500)
        #expect("\(refusedGrant.map { "\($0)" } ?? "")".contains("disk is full"))
        guard case .degraded(let why) = log.health else {
            Issue.record("a full disk must degrade the log, not \(log.health)")
            return
        }
        #expect(why.contains("grants and access are refused"))
        // Denials, which anyone can cause, do not go into the reserve.
        let denial = AuditEvent(kind: .grantDenied, time: Date(), fields: ["code": .string("locked_out")])
        await #expect(throws: AuditUnavailableError.self) { _ = try await log.append(denial) }
        // The place reserved before the disk filled is honoured in the reserve.
        #expect(!log.reserve(.request))
        _ = try await log.append(AuditEvent(kind: .request, time: Date(), fields: ["session": .string("s")]), reserved: true)
        acknowledged += 1
        // Session ends go into the reserve until it is used up; then they are refused too.
        let end = AuditEvent(kind: .grantRevoked, time: Date(), fields: ["session": .string("s")])
        var refusedEnd: (any Error)?
        var ends = 0
        while refusedEnd == nil && ends < 10_000 {
            do {
                _ = try await log.append(end)
                acknowledged += 1
                ends += 1
            } catch {
                refusedEnd = error
            }
        }
        #expect(ends > 10)
        #expect("\(refusedEnd.map { "\($0)" } ?? "")".contains("reserve is used up"))
        #expect(log.health != .ok)

        // Space returns: the log makes a new segment and grants are accepted again.
        try FileManager.default.removeItem(atPath: filler)
        _ = try await log.append(end)
        acknowledged += 1
        _ = try await log.append(Self.event(acknowledged))
        acknowledged += 1
        if case .failed(let why) = log.health { Issue.record("the log stopped: \(why)") }
        await log.close()
        // Nothing acknowledged was lost, and the log verifies.
        let report = try AuditVerifier.verify(directory: directory, verifier: fixture.signer.verifier)
        #expect(report.records == acknowledged)
    }

    @Test func checkpointHookGetsEveryCheckpointOnStandardInput() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let received = fixture.folder.file("hook-received")
        let logger = TestLog().logger(label: "audit-hook", level: .critical)
        let options = AuditLogOptions(checkpointHook: ["/bin/sh", "-c", "cat > '\(received)'"])
        let log = try AuditLog.open(
            directory: fixture.directory, origin: Self.origin, signer: fixture.signer, options: options, logger: logger)
        _ = try await log.append(Self.event(0))
        let note = try await log.checkpoint()
        await log.close()
        var text = ""
        for _ in 0..<200 {
            text = (try? String(contentsOfFile: received, encoding: .utf8)) ?? ""
            if text.hasSuffix("\n"), text.contains("\u{2014}") { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(text.hasPrefix("audit-test\n"))
        #expect(SignedNote(text: text)?.isSigned(by: fixture.signer.verifier) == true)
        #expect(note.hasPrefix("audit-test\n1\n"))
    }

    @Test func closedLogRefusesAppends() async throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let log = try fixture.open()
        _ = try await log.append(Self.event(0))
        await log.close()
        await #expect(throws: AuditUnavailableError.self) { try await log.append(Self.event(1)) }
        // A checkpoint asked of a closed log is refused, not left waiting for a writer that ended.
        await #expect(throws: AuditLogError.self) { try await log.checkpoint() }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<$0 + needle.count]) == needle }
    }
}

@Suite struct AuditCrashTests {
    /// Collects a child's standard output on its own thread while it runs.
    final class OutputCollector: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()

        func start(_ handle: FileHandle) {
            Thread.detachNewThread {
                while true {
                    let chunk = ProcessRunner.readSome(handle)
                    if chunk.isEmpty { return }
                    self.lock.lock()
                    self.data.append(chunk)
                    self.lock.unlock()
                }
            }
        }

        /// Whether a complete line has arrived.
        var hasLine: Bool {
            lock.lock()
            defer { lock.unlock() }
            return data.contains(UInt8(ascii: "\n"))
        }

        /// The numbers of the complete `ack N` lines so far (read as bytes: a fast writer prints
        /// hundreds of thousands of them).
        var acknowledged: [Int] {
            lock.lock()
            defer { lock.unlock() }
            var numbers: [Int] = []
            var value = 0
            var digits = 0
            var isAck = true
            var column = 0
            let prefix = Array("ack ".utf8)
            for byte in data {
                if byte == UInt8(ascii: "\n") {
                    if isAck && digits > 0 { numbers.append(value) }
                    (value, digits, isAck, column) = (0, 0, true, 0)
                    continue
                }
                if column < prefix.count {
                    if byte != prefix[column] { isAck = false }
                } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    value = value * 10 + Int(byte - UInt8(ascii: "0"))
                    digits += 1
                } else {
                    isAck = false
                }
                column += 1
            }
            return numbers
        }
    }

    @Test func killedWritersLoseNothingTheyAcknowledged() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let folder = try TestDirectory("audit-crash")
        defer { folder.remove() }
        let key = Curve25519.Signing.PrivateKey()
        let keyPath = folder.file("bench-key.pem")
        try KeyFile.writePrivate(key.pemRepresentation, to: keyPath)
        let directory = folder.file("log")
        let verifier = NoteSigner(name: "bench", privateKey: key).verifier
        var generator = SystemRandomNumberGenerator()
        var totalAcknowledged = 0
        for round in 0..<10 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: binary)
            child.arguments = ["audit", "bench", directory, "--key", keyPath, "--events", "1000000", "--writers", "32", "--print-acks"]
            let output = Pipe()
            child.standardOutput = output
            child.standardError = FileHandle.nullDevice
            let collector = OutputCollector()
            collector.start(output.fileHandleForReading)
            try child.run()
            // Wait for the writer to get going, then kill it at a random moment.
            for _ in 0..<400 where !collector.hasLine { try await Task.sleep(for: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(Int.random(in: 20...300, using: &generator)))
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            let acknowledged = collector.acknowledged
            #expect(!acknowledged.isEmpty, "round \(round): the writer acknowledged nothing before it was killed")
            totalAcknowledged += acknowledged.count

            // After the crash the log opens (a torn tail is cleared), verifies, and holds every acknowledged record.
            let logger = TestLog().logger(label: "crash", level: .critical)
            let log = try AuditLog.open(
                directory: directory, origin: "bench", signer: NoteSigner(name: "bench", privateKey: key), logger: logger)
            let size = log.size
            await log.close()
            let report = try AuditVerifier.verify(directory: directory, verifier: verifier)
            #expect(report.records >= size)
            if let highest = acknowledged.max() {
                #expect(highest < size, "round \(round): record \(highest) was acknowledged but the log holds \(size)")
            }
        }
        #expect(totalAcknowledged > 100)
    }
}
