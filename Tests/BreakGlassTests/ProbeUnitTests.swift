import BreakGlassConfig
import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import Testing

@testable import BreakGlassAuditFormat
@testable import BreakGlassAuditLog

/// The pieces of the self-test that need no gateway: TOTP codes, proofs from a frontier, policy keys.
@Suite struct ProbeUnitTests {
    @Test func totpCodesFollowRFC6238() throws {
        // RFC 6238 appendix B, SHA-1: the ASCII secret "12345678901234567890".
        let secret = Array("12345678901234567890".utf8).map { String(format: "%02x", $0) }.joined()
        let credentials = try ProbeCredentials(parsing: "password: p\ntotp_secret: \(secret)\ndigits: 8\n")
        #expect(credentials.code(step: credentials.step(at: Date(timeIntervalSince1970: 59))) == "94287082")
        #expect(credentials.code(step: credentials.step(at: Date(timeIntervalSince1970: 1_111_111_109))) == "07081804")
        #expect(credentials.code(step: credentials.step(at: Date(timeIntervalSince1970: 20_000_000_000))) == "65353130")
        let six = try ProbeCredentials(parsing: "password: p\ntotp_secret: \(secret)\n")
        #expect(six.code(step: 1) == "287082")
        #expect(six.window == 1 && six.period == 30)
    }

    @Test func totpMatchesOathtool() async throws {
        let oathtool = try #require(ProcessRunner.which("oathtool"), "oathtool is installed by Scripts/test")
        let secret = (0..<20).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let credentials = try ProbeCredentials(parsing: "password: p\ntotp_secret: \(secret)\n")
        let now = Date()
        let expected = try await ProcessRunner.run(oathtool, ["--totp", "-N", "@\(Int(now.timeIntervalSince1970))", secret])
        #expect(credentials.code(step: credentials.step(at: now)) == expected.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test func credentialProblemsNameTheLineAndNeverTheSecret() {
        #expect(throws: ProbeCredentials.Problem.self) { try ProbeCredentials(parsing: "password: hunter2\n") }
        do {
            _ = try ProbeCredentials(parsing: "password: hunter2\ntotp_secret: not-hex\n")
            Issue.record("accepted")
        } catch {
            #expect(error.line == 2)
            #expect(!error.message.contains("not-hex") && !error.message.contains("hunter2"))
        }
        do {
            _ = try ProbeCredentials(parsing: "password: x\ncolour: blue\n")
            Issue.record("accepted")
        } catch {
            #expect(error.line == 2 && error.message.contains("unknown key"))
        }
    }

    @Test func proofsFromAFrontierMatchProofsFromAllLeaves() {
        for size in [1, 2, 3, 7, 8, 13, 64, 100] {
            let leaves = (0..<size).map { MerkleTree.leafHash(Array("record \($0)".utf8)) }
            let root = MerkleTree.root(leaves[...])
            for start in Set([0, 1, size / 2, size - 1]) where start < size {
                var base = AppendOnlyTree()
                for index in 0..<start { base.append(entry: Array("record \(index)".utf8)) }
                let recent = RecentTree(base: base, leaves: Array(leaves[start...]))
                #expect(recent.hash(0..<size) == root, "size \(size) start \(start)")
                for index in start..<size {
                    let proof = recent.inclusionProof(index: index)
                    #expect(
                        proof == MerkleTree.inclusionProof(index: index, leaves: leaves[...]), "size \(size) start \(start) index \(index)")
                    #expect(
                        MerkleTree.verifyInclusion(leafHash: leaves[index], index: index, treeSize: size, proof: proof ?? [], root: root))
                }
                if start > 0 { #expect(recent.inclusionProof(index: start - 1) == nil) }
                #expect(RecentTree(base: base, leaves: []).hash(0..<start) == MerkleTree.root(leaves[..<start]))
            }
        }
    }

    @Test func probePolicyKeysAreCheckedWithTheirLines() throws {
        let directory = try PolicyLoaderTests.folder()
        defer { directory.remove() }
        try directory.write("probe.credentials", "password: p\ntotp_secret: 3132333435363738393031323334353637383930\n", mode: 0o644)
        try directory.write("ca.pem", "certificate")
        let policy =
            PolicyLoaderTests.valid.replacingOccurrences(
                of: "    source_cidrs: [127.0.0.0/8]\n",
                with: "    source_cidrs: [127.0.0.0/8]\n    probe: { method: POST, path: /health }\n")
                + """
                probes:
                  user: probe
                  credentials: probe.credentials
                  ca: ca.pem
                  interval: 1s
                alerts:
                  - exec: /nonexistent/pager
                  - webhook: ftp://example.com/hook

                """
        let path = try directory.write("policy.yaml", policy)
        do throws(PolicyValidationError) {
            _ = try PolicyLoader.load(path: path)
            Issue.record("accepted")
        } catch {
            let text = error.issues.map(\.description).joined(separator: "\n")
            #expect(text.contains("probes.credentials") && text.contains("0600") || text.contains("group or others"), "\(text)")
            #expect(text.contains("probe.method") && text.contains("not a safe method"), "\(text)")
            #expect(text.contains("probes.interval"), "\(text)")
            #expect(text.contains("alerts[0].exec") && text.contains("not an executable"), "\(text)")
            #expect(text.contains("alerts[1].webhook"), "\(text)")
            #expect(error.issues.allSatisfy { $0.line > 0 }, "\(text)")
        }
        // Fixed, it loads; the probe identity may not be on an allow list.
        try directory.write("probe.credentials", "password: p\ntotp_secret: 3132333435363738393031323334353637383930\n", mode: 0o600)
        let fixed = policy.replacingOccurrences(of: "method: POST, ", with: "").replacingOccurrences(
            of: "interval: 1s", with: "interval: 30s"
        )
        .replacingOccurrences(
            of: "  - exec: /nonexistent/pager\n  - webhook: ftp://example.com/hook\n", with: "  - webhook: https://hooks.example/x\n")
        let loaded = try PolicyLoader.load(path: try directory.write("policy.yaml", fixed))
        #expect(loaded.policy.probes?.interval == .seconds(30))
        #expect(loaded.policy.pathways["status-api"]?.probe == .http(method: "GET", path: "/health", status: 200...399, bodyContains: nil))
        #expect(loaded.policy.pathways["db"]?.probe == .tcp(banner: nil))
        #expect(loaded.policy.alerts.map(\.name) == ["webhook:hooks.example"])
        let allowed = fixed.replacingOccurrences(of: "sre-oncall: [alice, bob]", with: "sre-oncall: [alice, bob, probe]")
        let allowedPath = try directory.write("policy.yaml", allowed)
        do throws(PolicyValidationError) {
            _ = try PolicyLoader.load(path: allowedPath)
            Issue.record("accepted")
        } catch {
            #expect(error.issues.contains { $0.message.contains("probe identity") })
        }
    }
}
