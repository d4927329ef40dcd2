import BreakGlassConfig
import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import Testing

@Suite struct PolicyLoaderTests {
    /// A folder with the files a policy refers to (contents are not read by the loader).
    static func folder() throws -> TestDirectory {
        let directory = try TestDirectory("policy")
        try directory.write("tls/server.pem", "certificate")
        try directory.write("tls/server-key.pem", "key", mode: 0o600)
        try directory.write("token-key.pem", "key", mode: 0o600)
        try directory.write("audit-key.pem", "key", mode: 0o600)
        try directory.write("pam.d/breakglass", "auth required pam_deny.so\n")
        try directory.write("pam.d/other", "auth required pam_deny.so\n")
        return directory
    }

    static let valid = """
        gateway:
          id: demo-gateway
          listen: 127.0.0.1:8443
          tls: { certificate: tls/server.pem, private_key: tls/server-key.pem }
          token_key: token-key.pem
          pam: { service: breakglass, confdir: pam.d }
          lockout: { failures: 5, window: 5m, duration: 15m, source_failures: 50 }
          audit: { directory: audit, key: audit-key.pem, mirrors: [mirror], reserve: 2MiB }
        groups:
          sre-oncall: [alice, bob]
        pathways:
          status-api:
            kind: http
            upstream: http://127.0.0.1:9001
            allow: { users: [carol], groups: [sre-oncall] }
            default_duration: 15m
            max_duration: 1h
            require_ticket: "^INC-[0-9]+$"
            source_cidrs: [127.0.0.0/8]
          db:
            kind: tcp
            upstream: 127.0.0.1:5432
            allow: { groups: [sre-oncall] }

        """

    func load(_ text: String, in directory: TestDirectory) throws(PolicyValidationError) -> LoadedPolicy {
        guard let path = try? directory.write("policy.yaml", text) else {
            throw PolicyValidationError(issues: [
                PolicyIssue(file: "policy.yaml", line: 0, column: 0, keyPath: "", message: "test could not write")
            ])
        }
        return try PolicyLoader.load(path: path)
    }

    func issues(_ text: String) throws -> [PolicyIssue] {
        let directory = try Self.folder()
        defer { directory.remove() }
        do throws(PolicyValidationError) {
            _ = try load(text, in: directory)
            Issue.record("the policy was accepted")
            return []
        } catch {
            return error.issues
        }
    }

    @Test func validPolicyLoadsWithRelativePaths() throws {
        let directory = try Self.folder()
        defer { directory.remove() }
        let loaded = try load(Self.valid, in: directory)
        let policy = loaded.policy
        #expect(policy.gateway.id == "demo-gateway")
        #expect(policy.gateway.listen == ListenAddress(host: "127.0.0.1", port: 8443))
        #expect(policy.gateway.tlsCertificate == directory.file("tls/server.pem"))
        #expect(policy.gateway.pam.confdir == directory.file("pam.d"))
        #expect(policy.pathways["status-api"]?.maxDuration == .seconds(3600))
        #expect(policy.pathways["db"]?.upstream == Upstream(scheme: .tcp, host: "127.0.0.1", port: 5432))
        #expect(policy.pathways["db"]?.defaultDuration == .seconds(900))
        #expect(policy.groups["sre-oncall"] == ["alice", "bob"])
        #expect(loaded.sha256.count == 64)
        #expect(policy.gateway.audit?.directory == directory.file("audit"))
        #expect(policy.gateway.audit?.mirrors == [directory.file("mirror")])
        #expect(policy.gateway.audit?.reserve == 2 << 20)
    }

    @Test func badDurationNamesLineColumnAndKeyPath() throws {
        let text = Self.valid.replacingOccurrences(of: "max_duration: 1h", with: "max_duration: 2x")
        let found = try issues(text)
        #expect(found.count == 1)
        let issue = try #require(found.first)
        #expect(issue.line == 17)
        #expect(issue.column == 19)
        #expect(issue.keyPath == "pathways.status-api.max_duration")
        #expect(
            issue.description.hasSuffix(
                "policy.yaml:17:19: pathways.status-api.max_duration: \"2x\" is not a duration (write e.g. 30s, 15m, 1h, 1h30m)"))
    }

    @Test func unknownKeyIsRejectedWithHint() throws {
        let text = Self.valid.replacingOccurrences(of: "    default_duration: 15m", with: "    default_duraton: 15m")
        let issue = try #require(try issues(text).first)
        #expect(issue.line == 16)
        #expect(issue.keyPath == "pathways.status-api.default_duraton")
        #expect(issue.message.contains("unknown key (did you mean \"default_duration\"?)"))
    }

    @Test func everyErrorIsReportedAtOnce() throws {
        var text = Self.valid.replacingOccurrences(of: "kind: tcp", with: "kind: udp")
        text = text.replacingOccurrences(of: "listen: 127.0.0.1:8443", with: "listen: nowhere")
        text = text.replacingOccurrences(of: "groups: [sre-oncall] }\n\n", with: "groups: [dbas] }\n\n")
        text = text.replacingOccurrences(of: "127.0.0.0/8", with: "127.0.0.1/8")
        text = text.replacingOccurrences(of: "\"^INC-[0-9]+$\"", with: "\"^INC-[0-9+$\"")
        let found = try issues(text)
        let paths = found.map(\.keyPath)
        #expect(paths.contains("gateway.listen"))
        #expect(paths.contains("pathways.db.kind"))
        #expect(paths.contains("pathways.status-api.source_cidrs"))
        #expect(paths.contains("pathways.status-api.require_ticket"))
        #expect(found.count >= 4)
        #expect(found.allSatisfy { $0.line > 0 })
        #expect(found.map(\.line) == found.map(\.line).sorted())
    }

    @Test func auditSectionIsChecked() throws {
        let text = Self.valid.replacingOccurrences(of: "reserve: 2MiB", with: "reserve: lots")
        let issue = try #require(try issues(text).first)
        #expect(issue.keyPath == "gateway.audit.reserve")
        #expect(issue.message == "is not a size (write e.g. 4MiB, 64MiB, 1GiB)")
        let missing = Self.valid.replacingOccurrences(
            of: "  audit: { directory: audit, key: audit-key.pem, mirrors: [mirror], reserve: 2MiB }\n", with: "")
        #expect(try issues(missing).contains { $0.keyPath == "gateway.audit" && $0.message == "is required" })
    }

    @Test func missingRequiredKeys() throws {
        let text = Self.valid.replacingOccurrences(of: "  token_key: token-key.pem\n", with: "")
            .replacingOccurrences(of: "    kind: tcp\n", with: "")
        let found = try issues(text)
        #expect(found.contains { $0.keyPath == "gateway.token_key" && $0.message == "is required" })
        #expect(found.contains { $0.keyPath == "pathways.db.kind" && $0.message == "is required" })
    }

    @Test func undefinedGroupAndEmptyAllow() throws {
        let text = Self.valid.replacingOccurrences(of: "allow: { groups: [sre-oncall] }", with: "allow: { groups: [dbas] }")
        let issue = try #require(try issues(text).first)
        #expect(issue.keyPath == "pathways.db.allow.groups")
        #expect(issue.message == "group \"dbas\" is not defined under groups")
        let empty = Self.valid.replacingOccurrences(of: "allow: { groups: [sre-oncall] }", with: "allow: {}")
        #expect(try issues(empty).first?.message == "must list at least one user or group")
    }

    @Test func badUpstreamForKind() throws {
        let text = Self.valid.replacingOccurrences(of: "upstream: 127.0.0.1:5432", with: "upstream: http://127.0.0.1:5432")
        let issue = try #require(try issues(text).first)
        #expect(issue.keyPath == "pathways.db.upstream")
        #expect(issue.message.contains("is not an upstream for a tcp pathway"))
    }

    @Test func proxySettingsAreChecked() throws {
        let pinned = Self.valid.replacingOccurrences(
            of: "upstream: 127.0.0.1:5432", with: "upstream: 127.0.0.1:5432\n    upstream_ca: ca.pem")
        #expect(try issues(pinned).first?.message == "only an https upstream uses a CA")
        let byAddress = Self.valid.replacingOccurrences(
            of: "    kind: tcp\n    upstream: 127.0.0.1:5432", with: "    kind: http\n    upstream: https://10.0.0.5:8443")
        let issue = try #require(try issues(byAddress).first)
        #expect(issue.keyPath == "pathways.db.upstream")
        #expect(issue.message.contains("must be named by host name"))
        let limits = Self.valid.replacingOccurrences(
            of: "upstream: 127.0.0.1:5432",
            with: "upstream: 127.0.0.1:5432\n    max_connections: 0\n    audit_query: yes\n    connect_timeout: 0s")
        let found = try issues(limits).map(\.keyPath)
        #expect(found.contains("pathways.db.max_connections"))
        #expect(found.contains("pathways.db.audit_query"))
        #expect(found.contains("pathways.db.connect_timeout"))
    }

    /// The listener's limits, the lockout's per-user delay and a session's share of a pathway are
    /// read with their defaults, and a bad value is named by its key and line.
    @Test func limitsAreReadAndChecked() throws {
        let directory = try Self.folder()
        defer { directory.remove() }
        let defaults = try load(Self.valid, in: directory).policy
        #expect(defaults.gateway.limits == GatewayLimits())
        #expect(defaults.gateway.lockout.userDelayMax == .seconds(5))
        #expect(defaults.pathways["db"]?.proxy.maxConnectionsPerSession == 16)

        let tuned = Self.valid.replacingOccurrences(
            of: "  audit: { directory: audit",
            with: """
                  limits: { max_connections: 100, max_connections_per_source: 10, head_timeout: 3s, body_min_rate: 10, idle_timeout: 1m }
                  audit: { directory: audit
                """
        ).replacingOccurrences(of: "source_failures: 50 }", with: "source_failures: 50, user_delay_max: 20s }")
            .replacingOccurrences(of: "upstream: 127.0.0.1:5432", with: "upstream: 127.0.0.1:5432\n    max_connections_per_session: 3")
        let policy = try load(tuned, in: directory).policy
        #expect(policy.gateway.limits.maxConnections == 100)
        #expect(policy.gateway.limits.maxConnectionsPerSource == 10)
        #expect(policy.gateway.limits.headTimeout == .seconds(3))
        #expect(policy.gateway.limits.bodyMinRate == 10)
        #expect(policy.gateway.limits.idleTimeout == .seconds(60))
        #expect(policy.gateway.limits.bodyGrace == GatewayLimits().bodyGrace)
        #expect(policy.gateway.lockout.userDelayMax == .seconds(20))
        #expect(policy.pathways["db"]?.proxy.maxConnectionsPerSession == 3)

        let bad = Self.valid.replacingOccurrences(
            of: "  audit: { directory: audit",
            with: """
                  limits: { max_connections: 10, max_connections_per_source: 11, head_timeout: 0s, colour: red }
                  audit: { directory: audit
                """
        ).replacingOccurrences(of: "source_failures: 50 }", with: "source_failures: 50, user_delay_max: 2h }")
            .replacingOccurrences(of: "upstream: 127.0.0.1:5432", with: "upstream: 127.0.0.1:5432\n    max_connections_per_session: 0")
        let found = try issues(bad)
        let paths = found.map(\.keyPath)
        #expect(paths.contains("gateway.limits.max_connections_per_source"), "\(found)")
        #expect(paths.contains("gateway.limits.head_timeout"), "\(found)")
        #expect(paths.contains { $0.hasPrefix("gateway.limits") && $0.contains("colour") }, "\(found)")
        #expect(paths.contains("gateway.lockout.user_delay_max"), "\(found)")
        #expect(paths.contains("pathways.db.max_connections_per_session"), "\(found)")
        #expect(found.first { $0.keyPath == "gateway.limits.head_timeout" }?.line == 8, "\(found)")
    }

    @Test func defaultLongerThanMax() throws {
        let text = Self.valid.replacingOccurrences(of: "default_duration: 15m", with: "default_duration: 2h")
        #expect(try issues(text).first?.message == "2h is longer than max_duration 1h")
    }

    @Test func privateKeyReadableByOthersIsRefused() throws {
        let directory = try Self.folder()
        defer { directory.remove() }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: directory.file("token-key.pem"))
        do throws(PolicyValidationError) {
            _ = try load(Self.valid, in: directory)
            Issue.record("accepted a world-readable key")
        } catch {
            let issue = try #require(error.issues.first)
            #expect(issue.keyPath == "gateway.token_key")
            #expect(issue.line == 5)
            #expect(issue.message.contains("has mode 644: a private key must not be readable or writable by group or others (chmod 600)"))
        }
    }

    @Test func missingFilesAndPAMFolder() throws {
        let directory = try Self.folder()
        defer { directory.remove() }
        try FileManager.default.removeItem(atPath: directory.file("tls/server.pem"))
        try FileManager.default.removeItem(atPath: directory.file("pam.d/other"))
        do throws(PolicyValidationError) {
            _ = try load(Self.valid, in: directory)
            Issue.record("accepted missing files")
        } catch {
            #expect(error.issues.contains { $0.keyPath == "gateway.tls.certificate" && $0.message.contains("No such file") })
            #expect(error.issues.contains { $0.keyPath == "gateway.pam.confdir" && $0.message.contains("'other'") })
        }
    }

    @Test func yamlSyntaxErrorHasPlace() throws {
        let text = Self.valid.replacingOccurrences(of: "  sre-oncall: [alice, bob]", with: "  sre-oncall: [alice, bob")
        let issue = try #require(try issues(text).first)
        #expect(issue.line > 0)
        #expect(issue.message.hasPrefix("not valid YAML"))
    }

    @Test func duplicateKeyIsAnError() throws {
        let text = Self.valid.replacingOccurrences(of: "  id: demo-gateway\n", with: "  id: demo-gateway\n  id: other\n")
        let issue = try #require(try issues(text).first)
        #expect(issue.message.contains("duplicate key \"id\""))
    }

    @Test func wrongTypes() throws {
        let text = Self.valid.replacingOccurrences(of: "failures: 5,", with: "failures: many,")
            .replacingOccurrences(of: "  sre-oncall: [alice, bob]", with: "  sre-oncall: alice")
        let found = try issues(text)
        #expect(found.contains { $0.keyPath == "gateway.lockout.failures" && $0.message == "must be a whole number, found \"many\"" })
        #expect(found.contains { $0.keyPath == "groups.sre-oncall" && $0.message.hasPrefix("must be a list") })
    }

    @Test func emptyAndMissingFiles() throws {
        #expect(try issues("").first?.message == "the file is empty")
        do throws(PolicyValidationError) {
            _ = try PolicyLoader.load(path: "/nonexistent/policy.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.issues.first?.message.hasPrefix("cannot read") == true)
        }
    }

    @Test func storeKeepsLastKnownGood() async throws {
        let directory = try Self.folder()
        defer { directory.remove() }
        let path = try directory.write("policy.yaml", Self.valid)
        let store = try PolicyStore(path: path)
        try directory.write("policy.yaml", Self.valid.replacingOccurrences(of: "max_duration: 1h", with: "max_duration: soon"))
        let outcome = await store.reload()
        guard case .rejected(let error, keeping: let keeping) = outcome else {
            Issue.record("a broken file was accepted")
            return
        }
        #expect(error.issues.first?.keyPath == "pathways.status-api.max_duration")
        #expect(keeping.policy.pathways["status-api"]?.maxDuration == .seconds(3600))
        #expect(store.current.policy.pathways["status-api"]?.maxDuration == .seconds(3600))
        #expect(store.lastRejection != nil)
        try directory.write("policy.yaml", Self.valid.replacingOccurrences(of: "max_duration: 1h", with: "max_duration: 2h"))
        guard case .loaded = await store.reload() else {
            Issue.record("a good file was refused")
            return
        }
        #expect(store.current.policy.pathways["status-api"]?.maxDuration == .seconds(7200))
        #expect(store.lastRejection == nil)
    }
}
