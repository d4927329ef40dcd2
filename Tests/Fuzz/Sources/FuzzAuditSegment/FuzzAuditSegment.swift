import BreakGlassCore
import Crypto
import Foundation
import FuzzSupport
import Logging

@testable import BreakGlassAuditFormat
@testable import BreakGlassAuditLog

/// An audit segment's bytes, three ways: scanned in memory; read from a log directory (framing, CRCs,
/// sequence numbers, the torn tail); and, when it reads, opened for writing, which clears a torn tail.
/// After that recovery the log reads cleanly and holds every record it held before.
@main
enum FuzzAuditSegmentMain {
    static func main() {
        runFuzzer { data, size in fuzzAuditSegment(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAuditSegment(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).rest
    if let scan = try? SegmentScan.scan(bytes, name: "fuzz") {
        require(scan.end <= bytes.count, "the scan ends past the segment")
        for frame in scan.frames {
            require(frame.offset >= SegmentFormat.headerSize && frame.payloadEnd <= bytes.count, "a frame outside the segment")
        }
    }
    let directory = AuditFixture.shared.fresh()
    let segments = AuditLogReader.segmentsFolder(directory)
    guard (try? FileManager.default.createDirectory(atPath: segments, withIntermediateDirectories: true)) != nil,
        FileManager.default.createFile(atPath: segments + "/" + SegmentFormat.fileName(index: 1), contents: Data(bytes))
    else {
        require(false, "cannot write the segment under \(directory)")
        return 0
    }
    guard let before = try? AuditLogReader.read(directory: directory) else { return 0 }
    let log: AuditLog
    do {
        log = try AuditLog.open(
            directory: directory, origin: AuditFixture.origin, signer: AuditFixture.shared.signer,
            options: AuditFixture.options, logger: AuditFixture.logger)
    } catch {
        return 0
    }
    blocking { await log.close() }
    let after: AuditLogContents
    do {
        after = try AuditLogReader.read(directory: directory)
    } catch {
        require(false, "a log that opened and closed does not read: \(error)")
        return 0
    }
    require(after.tornTail == nil, "a torn tail is still there after recovery")
    require(after.entries.count >= before.entries.count, "recovery lost records")
    for (old, new) in zip(before.entries, after.entries) {
        require(old.bytes == new.bytes && old.sequence == new.sequence, "recovery changed record \(old.sequence)")
    }
    return 0
}

/// With `FUZZ_MAKE_SEEDS=DIR` set, writes seed segments and a checkpoint into DIR and exits.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let out = ProcessInfo.processInfo.environment["FUZZ_MAKE_SEEDS"] else { return 0 }
    AuditFixture.shared.makeSeeds(into: out)
    exit(0)
}

/// The log's key, options and a scratch directory in memory (/dev/shm), made once per process.
final class AuditFixture: Sendable {
    static let origin = "fuzz.example/log"
    static let shared = AuditFixture()
    static let options = AuditLogOptions(segmentSize: 64 << 10, reserve: 0, checkpointInterval: .seconds(3600), warnFreeBytes: 0)
    static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    let signer = NoteSigner(name: AuditFixture.origin, privateKey: fixedSigningKey(9))
    let root: String

    init() {
        root = scratchFolder("audit")
    }

    /// An empty directory for one input's log.
    func fresh() -> String {
        let directory = root + "/log"
        try? FileManager.default.removeItem(atPath: directory)
        return directory
    }

    /// A log of a few records; its segment whole, torn and damaged; and its checkpoint.
    func makeSeeds(into out: String) {
        let directory = fresh()
        do {
            let log = try AuditLog.open(
                directory: directory, origin: Self.origin, signer: signer, options: Self.options, logger: Self.logger)
            let kinds: [AuditEvent.Kind] = [.grantIssued, .request, .request, .grantReleased]
            for (index, kind) in kinds.enumerated() {
                let event = AuditEvent(
                    kind: kind, time: Date(timeIntervalSince1970: 1_800_000_000 + Double(index)),
                    fields: ["user": .string("alice"), "pathway": .string("web"), "session": .string("s1")])
                blocking { _ = try? await log.append(event) }
            }
            _ = blocking { try? await log.checkpoint() }
            blocking { await log.close() }
            let segment = try Data(
                contentsOf: URL(fileURLWithPath: AuditLogReader.segmentsFolder(directory) + "/" + SegmentFormat.fileName(index: 1)))
            let used = Data(segment.prefix(through: segment.lastIndex { $0 != 0 } ?? 0))
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try used.write(to: URL(fileURLWithPath: out + "/segment-whole"))
            try used.prefix(used.count - 7).write(to: URL(fileURLWithPath: out + "/segment-torn"))
            var damaged = used
            damaged[damaged.count / 2] ^= 0x20
            try damaged.write(to: URL(fileURLWithPath: out + "/segment-damaged"))
            try Data(contentsOf: URL(fileURLWithPath: directory + "/checkpoint")).write(to: URL(fileURLWithPath: out + "/checkpoint"))
        } catch {
            require(false, "cannot make seeds: \(error)")
        }
    }
}
