import ArgumentParser
import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassConfig
import BreakGlassCore
import Foundation

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Review and verify an audit log folder (a copy works; the gateway need not run).",
        subcommands: [Verify.self, Sessions.self, Show.self, Export.self, Checkpoint.self, Key.self, Prove.self, AuditBenchCommand.self]
    )

    /// Loads the verifier key: a key string, a file holding one, or the folder's own `audit-key.pub`.
    static func verifier(_ key: String?, directory: String) throws -> (NoteVerifier, fromFolder: Bool) {
        let text: String
        var fromFolder = false
        if let key {
            if FileManager.default.fileExists(atPath: key) {
                text = (try? String(contentsOfFile: key, encoding: .utf8)) ?? ""
            } else {
                text = key
            }
        } else {
            fromFolder = true
            guard let stored = try? String(contentsOfFile: directory + "/audit-key.pub", encoding: .utf8) else {
                throw CLIFailure(message: "no --key given and \(directory)/audit-key.pub is missing")
            }
            text = stored
        }
        guard let verifier = NoteVerifier(keyString: text) else {
            throw CLIFailure(message: "not a verifier key (NAME+KEYID+BASE64): \(text.prefix(120))")
        }
        return (verifier, fromFolder)
    }

    /// Every entry of the log, as stored; records are decoded only when asked for.
    static func entries(_ directory: String, decode: Bool = true) throws -> [AuditLogContents.Entry] {
        do throws(AuditLogError) {
            return try AuditLogReader.read(directory: directory, decode: decode).entries
        } catch {
            throw CLIFailure(message: "cannot read \(directory): \(error.message)")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the tree and check every record, checkpoint signature and consistency; exit 0 only if all holds."
        )

        @Argument(help: "The audit log folder.")
        var directory: String

        @Option(
            help: "Verifier key (NAME+KEYID+BASE64, from `breakglass audit key`) or a file holding it. Default: the folder's audit-key.pub."
        )
        var key: String?

        @Option(help: "A signed checkpoint saved earlier (or a mirror's checkpoint file); the log must still contain it.")
        var trustedCheckpoint: String?

        func run() async throws {
            try await reporting {
                let (verifier, fromFolder) = try AuditCommand.verifier(key, directory: directory)
                var trusted: String?
                if let trustedCheckpoint {
                    guard let text = try? String(contentsOfFile: trustedCheckpoint, encoding: .utf8) else {
                        throw CLIFailure(message: "cannot read \(trustedCheckpoint)")
                    }
                    trusted = text
                }
                let report: AuditVerifier.Report
                do throws(AuditLogError) {
                    report = try AuditVerifier.verify(directory: directory, verifier: verifier, trustedCheckpoint: trusted) {
                        segment, count in
                        if count > 1 { FileHandleWriter.standardError.write("\rreading segment \(segment) of \(count)") }
                        if count > 1 && segment == count { FileHandleWriter.standardError.write("\n") }
                    }
                } catch {
                    print("FAILED: \(error.message)")
                    throw ExitCode(1)
                }
                let megabytes = String(format: "%.1f", Double(report.bytes) / 1_000_000)
                print(
                    "OK: \(report.records) records (\(megabytes) MB); \(report.checkpointsChecked) signed checkpoints verified with \(verifier.keyString)"
                )
                print("root \(Data(report.root).base64EncodedString()) at size \(report.records)")
                if let size = report.trustedCheckpointSize { print("the trusted checkpoint (size \(size)) is contained in the log") }
                if fromFolder {
                    print("note: the key came from the folder itself; pass --key with the key you hold for an independent check")
                }
                for note in report.notes { print("note: \(note)") }
            }
        }
    }

    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One row per emergency session: who, where, why, when and how it ended.")

        @Argument(help: "The audit log folder.")
        var directory: String

        @Option(help: "Only sessions started at or after this time (ISO 8601, e.g. 2026-11-27T08:00:00Z).")
        var since: String?

        @Option(help: "Only sessions started before this time (ISO 8601).")
        var until: String?

        @Option(help: "Only this user's sessions.")
        var user: String?

        @Option(help: "Only sessions on this pathway.")
        var pathway: String?

        @Flag(help: "Print JSON (one array) instead of a table.")
        var json = false

        @Flag(help: "Show the self-test's probe sessions too (hidden by default).")
        var probes = false

        func run() async throws {
            try await reporting {
                let sinceDate = try since.map(Self.date)
                let untilDate = try until.map(Self.date)
                let sessions = AuditSessions.summarize(try AuditCommand.entries(directory).compactMap(\.record)).filter { session in
                    (probes || session.tag != "probe")
                        && (sinceDate.map { session.startedAt >= $0 } ?? true) && (untilDate.map { session.startedAt < $0 } ?? true)
                        && (user.map { session.user == $0 } ?? true) && (pathway.map { session.pathway == $0 } ?? true)
                }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    encoder.dateEncodingStrategy = .iso8601
                    print(String(decoding: try encoder.encode(sessions), as: UTF8.self))
                    return
                }
                print(
                    "SESSION                           USER         PATHWAY          START (UTC)           END (UTC)             HOW       REQ  TUN  TICKET      REASON"
                )
                for session in sessions {
                    let end = session.endedAt ?? session.expiresAt
                    let how = session.ending ?? (session.expiresAt.map { $0 < Date() ? "expired" : "active" } ?? "?")
                    let cells = [
                        session.session.padding(toLength: 33, withPad: " ", startingAt: 0),
                        session.user.padding(toLength: 12, withPad: " ", startingAt: 0),
                        session.pathway.padding(toLength: 16, withPad: " ", startingAt: 0),
                        TimeFormat.utc(session.startedAt).padding(toLength: 21, withPad: " ", startingAt: 0),
                        (end.map(TimeFormat.utc) ?? "-").padding(toLength: 21, withPad: " ", startingAt: 0),
                        how.padding(toLength: 9, withPad: " ", startingAt: 0),
                        String(session.requests).padding(toLength: 4, withPad: " ", startingAt: 0),
                        String(session.tunnels).padding(toLength: 4, withPad: " ", startingAt: 0),
                        (session.ticket ?? "-").padding(toLength: 11, withPad: " ", startingAt: 0),
                        session.reason,
                    ]
                    print(cells.joined(separator: " "))
                }
            }
        }

        static func date(_ text: String) throws -> Date {
            guard let date = try? Date.ISO8601FormatStyle().parse(text) else {
                throw CLIFailure(message: "\"\(text)\" is not an ISO 8601 time such as 2026-11-27T08:00:00Z")
            }
            return date
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every event of one session, in order: a timeline, or with --json the records as stored.")

        @Argument(help: "The audit log folder.")
        var directory: String

        @Argument(help: "The session id, or a prefix of it that only one session has (as with git).")
        var session: String

        @Flag(help: "Print the records as stored (one JSON record a line), the exact bytes the tree covers.")
        var json = false

        func run() async throws {
            try await reporting {
                let entries = try AuditCommand.entries(directory)
                let id = try Self.resolve(session, among: AuditSessions.summarize(entries.compactMap(\.record)).map(\.session))
                let events = entries.filter { $0.record?.event.fields["session"] == .string(id) }
                guard !events.isEmpty else { throw CLIFailure(message: "no events for session \(id) in \(directory)") }
                if json {
                    for entry in events { print(String(decoding: entry.bytes, as: UTF8.self)) }
                    return
                }
                print("Session \(id)")
                for entry in events {
                    guard let event = entry.record?.event else { continue }
                    let details = event.fields.filter { $0.key != "session" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                    let kind = event.kind.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)
                    print("  \(TimeFormat.local(event.time))  \(kind) \(details.joined(separator: " "))")
                }
            }
        }

        /// The one session id that `prefix` names (the whole id counts too).
        static func resolve(_ prefix: String, among sessions: [String]) throws -> String {
            switch AuditSessions.find(prefix, among: sessions) {
            case .found(let id): return id
            case .none: throw CLIFailure(message: "no session starts with \(prefix)")
            case .ambiguous(let matches):
                throw CLIFailure(
                    message:
                        "\(matches.count) sessions start with \(prefix) (\(matches.prefix(3).joined(separator: ", "))…); give more of the id"
                )
            }
        }
    }

    struct Export: AsyncParsableCommand {
        enum Format: String, ExpressibleByArgument, CaseIterable {
            case jsonl, csv
        }

        static let configuration = CommandConfiguration(abstract: "Every record, for SIEMs (jsonl) and spreadsheets (csv).")

        @Argument(help: "The audit log folder.")
        var directory: String

        @Option(help: "jsonl or csv.")
        var format: Format = .jsonl

        static let columns = [
            "seq", "time", "event", "gateway", "session", "user", "pathway", "source", "reason", "ticket", "code", "message",
        ]

        func run() async throws {
            try await reporting {
                let entries = try AuditCommand.entries(directory, decode: format == .csv)
                if format == .csv { print(Self.columns.joined(separator: ",") + ",details") }
                for entry in entries {
                    switch format {
                    case .jsonl:
                        print(String(decoding: entry.bytes, as: UTF8.self))
                    case .csv:
                        if let record = entry.record { print(Self.csvRow(record)) }
                    }
                }
            }
        }

        static func csvRow(_ record: AuditRecord) -> String {
            let fields = record.event.fields
            var cells = [String(record.sequence), AuditRecord.formatTime(record.event.time), record.event.kind.rawValue, record.gateway]
            for column in columns.dropFirst(4) { cells.append(fields[column].map { "\($0)" } ?? "") }
            let rest = fields.filter { !columns.contains($0.key) }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            cells.append(rest.joined(separator: "; "))
            return cells.map(csvEscape).joined(separator: ",")
        }

        static func csvEscape(_ text: String) -> String {
            var safe = text
            // A leading =, +, - or @ would run as a formula in a spreadsheet.
            if let first = safe.first, "=+-@".contains(first), Int(safe) == nil { safe = "'" + safe }
            guard safe.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return safe }
            return "\"" + safe.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the latest signed checkpoint (C2SP tlog-checkpoint text).")

        @Argument(help: "The audit log folder.")
        var directory: String

        func run() async throws {
            try await reporting {
                guard let note = try? AuditLogReader.latestCheckpoint(directory: directory) else {
                    throw CLIFailure(message: "\(directory) has no checkpoint yet")
                }
                FileHandleWriter.standardOutput.write(note)
            }
        }
    }

    struct Key: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the audit log's verifier key (C2SP signed-note form) for auditors and verifiers."
        )

        @Option(help: "The gateway's policy file (its gateway.id and gateway.audit.key are used).")
        var config: String

        func run() async throws {
            try await reporting {
                let loaded: LoadedPolicy
                do {
                    loaded = try PolicyLoader.load(path: config)
                } catch {
                    throw CLIFailure(message: "\(error)")
                }
                guard let settings = loaded.policy.gateway.audit else {
                    throw CLIFailure(message: "\(config) has no gateway.audit section")
                }
                do throws(AuditLogError) {
                    print(try AuditLog.loadSigner(settings: settings, origin: loaded.policy.gateway.id).verifier.keyString)
                } catch {
                    throw CLIFailure(message: error.message)
                }
            }
        }
    }

    struct Prove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an inclusion proof (--index) or a consistency proof (--consistency) against the latest checkpoint.",
            discussion:
                "--index prints a c2sp.org/tlog-proof@v1 block: the index, the proof hashes (base64), a blank line and the checkpoint."
        )

        @Argument(help: "The audit log folder.")
        var directory: String

        @Option(help: "The record (leaf) index to prove.")
        var index: Int?

        @Option(help: "An older tree size to prove consistency from.")
        var consistency: Int?

        func run() async throws {
            try await reporting {
                guard (index == nil) != (consistency == nil) else {
                    throw CLIFailure(message: "give exactly one of --index N or --consistency OLD_SIZE")
                }
                guard let note = try? AuditLogReader.latestCheckpoint(directory: directory), let signed = SignedNote(text: note),
                    let checkpoint = BreakGlassAuditFormat.Checkpoint(body: signed.body)
                else { throw CLIFailure(message: "\(directory) has no valid checkpoint yet") }
                // Leaves from the stored bytes: re-encoding decoded records need not give the same bytes.
                let leaves = try AuditCommand.entries(directory, decode: false).map { MerkleTree.leafHash($0.bytes) }
                guard checkpoint.size <= leaves.count else {
                    throw CLIFailure(message: "the log is shorter than its checkpoint; run audit verify")
                }
                let covered = leaves.prefix(checkpoint.size)
                if let index {
                    guard let proof = MerkleTree.inclusionProof(index: index, leaves: covered) else {
                        throw CLIFailure(message: "index \(index) is not in the checkpoint (size \(checkpoint.size))")
                    }
                    var text = "c2sp.org/tlog-proof@v1\nindex \(index)\n"
                    for hash in proof { text += Data(hash).base64EncodedString() + "\n" }
                    FileHandleWriter.standardOutput.write(text + "\n" + note)
                } else if let consistency {
                    guard let proof = MerkleTree.consistencyProof(oldSize: consistency, leaves: covered) else {
                        throw CLIFailure(message: "size \(consistency) is larger than the checkpoint (size \(checkpoint.size))")
                    }
                    FileHandleWriter.standardOutput.write(proof.map { Data($0).base64EncodedString() + "\n" }.joined())
                }
            }
        }
    }
}
