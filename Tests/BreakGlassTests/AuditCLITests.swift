import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassTestSupport
import Crypto
import Foundation
import Logging
import Testing

@Suite struct AuditCLITests {
    /// A log of 20 grant sessions, two of them ended, with a checkpoint saved at size 7.
    static func makeLog(in folder: TestDirectory) async throws -> (directory: String, signer: NoteSigner, oldCheckpoint: String) {
        let signer = NoteSigner(name: "cli-gateway", privateKey: Curve25519.Signing.PrivateKey())
        let logger = TestLog().logger(label: "audit-cli-test", level: .critical)
        let directory = folder.file("audit")
        let log = try AuditLog.open(directory: directory, origin: "cli-gateway", signer: signer, logger: logger)
        var old = ""
        for index in 0..<20 {
            let grant = Grant(
                session: String(format: "%032x", index),
                user: index % 2 == 0 ? "alice" : "bob",
                pathway: index % 3 == 0 ? "db" : "status-api",
                reason: "outage, step \(index)",
                ticket: "INC-\(100 + index)",
                issuedAt: Date(timeIntervalSince1970: 1_800_000_000 + Double(index * 60)),
                expiresAt: Date(timeIntervalSince1970: 1_800_000_900 + Double(index * 60)),
                amr: ["pwd", "otp", "mfa"],
                source: "127.0.0.1",
                // The last is the self-test's: hidden from `audit sessions` unless --probes.
                tag: index == 19 ? .probe : nil
            )
            _ = try await log.append(.grantIssued(grant, tokenSHA256: String(repeating: "ab", count: 32)))
            if index == 6 { old = try await log.checkpoint() }
        }
        let ended = AuditEvent(
            kind: .grantReleased,
            time: Date(timeIntervalSince1970: 1_800_000_300),
            fields: ["session": .string(String(format: "%032x", 2)), "user": .string("alice")]
        )
        _ = try await log.append(ended)
        _ = try await log.checkpoint()
        await log.close()
        return (directory, signer, old)
    }

    @Test func verifySessionsShowExportCheckpointAndProve() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let folder = try TestDirectory("audit-cli")
        defer { folder.remove() }
        let (directory, signer, _) = try await Self.makeLog(in: folder)

        let verify = try await ProcessRunner.run(binary, ["audit", "verify", directory, "--key", signer.verifier.keyString])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.hasPrefix("OK: 21 records ("))
        let wrongKey = NoteSigner(name: "cli-gateway", privateKey: Curve25519.Signing.PrivateKey()).verifier.keyString
        let refused = try await ProcessRunner.run(binary, ["audit", "verify", directory, "--key", wrongKey])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("is not signed by key \(wrongKey) (forged, or signed by another key)"))

        let sessions = try await ProcessRunner.run(
            binary, ["audit", "sessions", directory, "--user", "alice", "--pathway", "db", "--json"])
        #expect(sessions.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(sessions.stdout.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["session"] as? String } == [0, 6, 12, 18].map { String(format: "%032x", $0) })
        let table = try await ProcessRunner.run(binary, ["audit", "sessions", directory])
        #expect(table.stdout.split(separator: "\n").count == 20)
        let withProbes = try await ProcessRunner.run(binary, ["audit", "sessions", directory, "--probes"])
        #expect(withProbes.stdout.split(separator: "\n").count == 21)
        #expect(table.stdout.contains("released"))
        let since = try await ProcessRunner.run(binary, ["audit", "sessions", directory, "--since", "2027-01-15T08:15:00Z", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(since.stdout.utf8)) as? [Any])?.count == 4)

        let show = try await ProcessRunner.run(binary, ["audit", "show", directory, String(format: "%032x", 2), "--json"])
        let lines = show.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains("\"event\":\"grant.issued\"") == true)
        #expect(lines.last?.contains("\"event\":\"grant.released\"") == true)
        // A readable timeline by default (issue 19 item 11); ids by a unique prefix: `AuditSessionLookupTests`.
        let timeline = try await ProcessRunner.run(binary, ["audit", "show", directory, String(format: "%032x", 2)])
        #expect(timeline.status == 0, "\(timeline.stderr)")
        let steps = timeline.stdout.split(separator: "\n")
        #expect(steps.first == "Session \(String(format: "%032x", 2))")
        #expect(steps.count == 3 && steps[1].contains("grant.issued") && steps[2].contains("grant.released"), "\(timeline.stdout)")
        let ambiguous = try await ProcessRunner.run(binary, ["audit", "show", directory, "0000"])
        #expect(ambiguous.status == 1 && ambiguous.stderr.contains("sessions start with 0000"), "\(ambiguous.stderr)")

        let jsonl = try await ProcessRunner.run(binary, ["audit", "export", directory, "--format", "jsonl"])
        #expect(jsonl.stdout.split(separator: "\n").count == 21)
        let csv = try await ProcessRunner.run(binary, ["audit", "export", directory, "--format", "csv"])
        let csvLines = csv.stdout.split(separator: "\n")
        #expect(csvLines.first == "seq,time,event,gateway,session,user,pathway,source,reason,ticket,code,message,details")
        #expect(csvLines.count == 22)
        #expect(csvLines[1].contains("\"outage, step 0\""))

        let checkpoint = try await ProcessRunner.run(binary, ["audit", "checkpoint", directory])
        #expect(checkpoint.stdout.hasPrefix("cli-gateway\n21\n"))
        #expect(SignedNote(text: checkpoint.stdout)?.isSigned(by: signer.verifier) == true)
    }

    @Test func independentVerifierAcceptsCheckpointAndProofs() async throws {
        let binary = try ProcessRunner.breakglassExecutable()
        let python = try #require(ProcessRunner.which("python3"), "python3 is needed for the interop test")
        let folder = try TestDirectory("audit-interop")
        defer { folder.remove() }
        let (directory, signer, old) = try await Self.makeLog(in: folder)
        let script = try Self.repositoryFile("Scripts/lib/tlog_interop.py")

        let checkpoint = try await ProcessRunner.run(binary, ["audit", "checkpoint", directory])
        let inclusion = try await ProcessRunner.run(binary, ["audit", "prove", directory, "--index", "5"])
        #expect(inclusion.status == 0, "\(inclusion.stderr)")
        #expect(inclusion.stdout.hasPrefix("c2sp.org/tlog-proof@v1\nindex 5\n"))
        let consistency = try await ProcessRunner.run(binary, ["audit", "prove", directory, "--consistency", "7"])
        #expect(consistency.status == 0, "\(consistency.stderr)")
        let leaf = try await ProcessRunner.run(binary, ["audit", "export", directory])
        let leafLine = String(leaf.stdout.split(separator: "\n")[5])

        let files = [
            try folder.write("checkpoint.note", checkpoint.stdout),
            signer.verifier.keyString,
            try folder.write("inclusion.proof", inclusion.stdout),
            try folder.write("leaf.json", leafLine),
            try folder.write("old.note", old),
            try folder.write("consistency.proof", consistency.stdout),
        ]
        let accepted = try await ProcessRunner.run(python, [script] + files)
        #expect(accepted.status == 0, "\(accepted.stdout)\(accepted.stderr)")
        #expect(accepted.stdout.contains("verified"))

        // The same verifier rejects a forged checkpoint and a wrong leaf.
        let forged = try NoteSigner(name: "cli-gateway", privateKey: Curve25519.Signing.PrivateKey())
            .sign(try #require(SignedNote(text: checkpoint.stdout)).body)
        var tampered = files
        tampered[0] = try folder.write("forged.note", forged)
        #expect(try await ProcessRunner.run(python, [script] + tampered).status != 0)
        tampered = files
        tampered[3] = try folder.write("other-leaf.json", String(leaf.stdout.split(separator: "\n")[6]))
        #expect(try await ProcessRunner.run(python, [script] + tampered).status != 0)
    }

    static func repositoryFile(_ path: String) throws -> String {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            folder.deleteLastPathComponent()
        }
        throw TestSupportError("\(path) not found above \(#filePath)")
    }
}

/// Session ids by a prefix, as git names commits (issue 19 item 11).
@Suite struct AuditSessionLookupTests {
    @Test func aUniquePrefixOrTheWholeIdNamesOneSession() {
        let sessions = ["3f9a01", "3f9b02", "77aa00", "3f9a01"]
        #expect(AuditSessions.find("77", among: sessions) == .found("77aa00"))
        #expect(AuditSessions.find("3f9a", among: sessions) == .found("3f9a01"))
        #expect(AuditSessions.find("3f9b02", among: sessions) == .found("3f9b02"))
        #expect(AuditSessions.find("3f9", among: sessions) == .ambiguous(["3f9a01", "3f9b02"]))
        #expect(AuditSessions.find("zz", among: sessions) == .none)
    }
}
