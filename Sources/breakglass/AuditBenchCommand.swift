import ArgumentParser
import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import Crypto
import CryptoExtras
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `breakglass audit bench`: durable append throughput, and the disk's raw ceiling for comparison.
struct AuditBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure durable audit appends per second with concurrent writers (and the disk's raw ceiling).",
        discussion: """
            Appends --events records of about --record-bytes bytes from --writers concurrent tasks into a log
            in DIR (made if missing) and prints events/s. --raw instead measures the ceiling of the same disk:
            one write and one fdatasync per batch of 64 records, in DIR/raw-ceiling.bin (written full of zeros
            and flushed before the clock starts).
            --print-acks prints "ack SEQ" for every acknowledged record (for crash tests).
            """
    )

    @Argument(help: "A folder for the benchmark log.")
    var directory: String

    @Option(help: "Records to append.")
    var events = 200_000

    @Option(help: "Concurrent writers.")
    var writers = 64

    @Option(help: "Approximate size of one record.")
    var recordBytes = 300

    @Option(help: "Checkpoint signing key (PEM); a fresh one is made when absent.")
    var key: String?

    @Flag(help: "Measure the raw write + fdatasync ceiling instead.")
    var raw = false

    @Flag(help: "Print \"ack SEQ\" for each acknowledged record.")
    var printAcks = false

    func run() async throws {
        try await reporting {
            guard (1...10_000_000).contains(events), (1...4096).contains(writers), (64...16_384).contains(recordBytes) else {
                throw CLIFailure(message: "--events 1...10000000, --writers 1...4096, --record-bytes 64...16384")
            }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if raw {
                try rawCeiling()
            } else {
                try await durable()
            }
        }
    }

    private func durable() async throws {
        let privateKey: Curve25519.Signing.PrivateKey
        if let key {
            privateKey = try Curve25519.Signing.PrivateKey(pemRepresentation: try KeyFile.readPrivate(path: key))
        } else {
            privateKey = Curve25519.Signing.PrivateKey()
        }
        var logger = Logger(label: "audit-bench")
        logger.logLevel = .error
        let log: AuditLog
        do {
            log = try AuditLog.open(
                directory: directory, origin: "bench", signer: NoteSigner(name: "bench", privateKey: privateKey), logger: logger)
        } catch {
            throw CLIFailure(message: "cannot open the log: \(error.message)")
        }
        let padding = String(repeating: "x", count: max(0, recordBytes - 120))
        // Plain copies: reading an option through its property wrapper in the loop costs more than
        // some of what is measured.
        let (events, writers, printAcks) = (self.events, self.writers, self.printAcks)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var index = writer
                    while index < events {
                        let event = AuditEvent(
                            kind: AuditEvent.Kind(rawValue: "bench.event"), time: Date(),
                            fields: ["n": .integer(Int64(index)), "pad": .string(padding)])
                        let sequence = try await log.append(event)
                        if printAcks { FileHandleWriter.standardOutput.write("ack \(sequence)\n") }
                        index += writers
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = started.duration(to: .now)
        await log.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(
            String(
                format: "durable appends: %d records from %d writers in %.2f s = %.0f records/s", events, writers, seconds,
                Double(events) / seconds))
    }

    private func rawCeiling() throws {
        let path = directory + "/raw-ceiling.bin"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIFailure(message: "cannot create \(path)") }
        defer {
            close(fd)
            unlink(path)
        }
        let frame = recordBytes + 8
        let batch = [UInt8](repeating: 0x61, count: frame * 64)
        // The file is written full of zeros and flushed first, as the log's writer has its segments
        // zeroed ahead: flushes into written space carry only data, while flushes into allocated but
        // unwritten space (posix_fallocate alone) also commit the file system's journal.
        let size = batch.count * (events / 64 + 1)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var zeroed = 0
        while zeroed < size {
            let count = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, min($0.count, size - zeroed), off_t(zeroed)) }
            guard count > 0 else { throw CLIFailure(message: "cannot write zeros to \(path)") }
            zeroed += count
        }
        guard fsync(fd) == 0 else { throw CLIFailure(message: "cannot flush \(path)") }
        let started = ContinuousClock.now
        var offset = 0
        var written = 0
        while written < events {
            let count = batch.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard count == batch.count, fdatasync(fd) == 0 else { throw CLIFailure(message: "write or fdatasync failed on \(path)") }
            offset += batch.count
            written += 64
        }
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(
            String(
                format: "raw ceiling: %d records of %d bytes, one write + fdatasync per 64, in %.2f s = %.0f records/s", written,
                recordBytes, seconds, Double(written) / seconds))
    }
}
