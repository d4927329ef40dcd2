import BreakGlassAPI
import BreakGlassAuditFormat
import BreakGlassCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// What an on-call engineer does, timed step by step: log in (a grant tagged `drill`), reach the
/// pathway (an HTTP request or a CONNECT tunnel), log out, then check that the session's audit
/// trail holds the grant, the access and the release, each proven included in a signed checkpoint.
public struct Drill: Sendable {
    /// One timed step of the drill.
    public struct Step: Codable, Sendable, Equatable {
        /// What the step does, e.g. `login`.
        public var name: String
        /// How long the step took, in milliseconds.
        public var milliseconds: Double
        /// Whether the step succeeded.
        public var passed: Bool
        /// What happened, for people.
        public var detail: String

        enum CodingKeys: String, CodingKey {
            case name, passed, detail
            case milliseconds = "ms"
        }
    }

    /// The outcome of a drill.
    public struct Report: Codable, Sendable, Equatable {
        /// The pathway drilled.
        public var pathway: String
        /// The drill's session id; nil when the login failed.
        public var session: String?
        /// The steps taken, in order.
        public var steps: [Step]
        /// From the start of the login to the first byte of access.
        public var timeToAccessMilliseconds: Double?
        /// The whole drill, in milliseconds.
        public var totalMilliseconds: Double
        /// Whether every step passed.
        public var passed: Bool

        enum CodingKeys: String, CodingKey {
            case pathway, session, steps, passed
            case timeToAccessMilliseconds = "time_to_access_ms"
            case totalMilliseconds = "total_ms"
        }
    }

    /// The gateway's URL, `https://HOST:PORT`.
    public var gateway: String
    /// A PEM CA bundle to trust instead of the system roots.
    public var caFile: String?
    /// The login to perform; the drill sets its tag to `drill`.
    public var login: GrantLogin
    /// The path requested on an http pathway.
    public var path: String
    /// Bytes a tcp pathway's upstream must send first, when given.
    public var banner: String?
    /// The auditors' checkpoint key; nil trusts the key the gateway names (and says so).
    public var auditKey: NoteVerifier?
    /// Longest wait for each exchange with the gateway.
    public var timeout: Duration

    /// A drill with the given settings.
    public init(
        gateway: String, caFile: String?, login: GrantLogin, path: String = "/", banner: String? = nil, auditKey: NoteVerifier? = nil,
        timeout: Duration = .seconds(30)
    ) {
        self.gateway = gateway
        self.caFile = caFile
        self.login = login
        self.path = path
        self.banner = banner
        self.auditKey = auditKey
        self.timeout = timeout
    }

    /// Runs the drill (logging out even after a failed access) and reports each step; never throws.
    public func run() async -> Report {
        let started = ContinuousClock.now
        var report = Report(
            pathway: login.pathway, session: nil, steps: [], timeToAccessMilliseconds: nil, totalMilliseconds: 0, passed: false)
        await perform(&report, started: started)
        report.totalMilliseconds = started.duration(to: .now).reportMilliseconds
        return report
    }

    private func perform(_ report: inout Report, started: ContinuousClock.Instant) async {
        var mark = started
        func step(_ name: String, _ passed: Bool, _ detail: String) {
            let now = ContinuousClock.now
            report.steps.append(Step(name: name, milliseconds: mark.duration(to: now).reportMilliseconds, passed: passed, detail: detail))
            mark = now
        }
        let client: GatewayClient
        do {
            client = try GatewayClient(gateway: gateway, caFile: caFile, timeout: timeout)
        } catch {
            step("login", false, error.message)
            return
        }
        defer { Task { await client.shutdown() } }
        // 1. Log in.
        var login = self.login
        login.tag = "drill"
        let grant: IssuedGrant
        do {
            grant = try await client.requestGrant(login)
            report.session = grant.session
            step("login", true, "session \(grant.session), expires \(AuditValue.time(grant.expiresAt))")
        } catch {
            step("login", false, "\(error.message) [\(error.code)]")
            return
        }
        // 2. Reach the pathway.
        let accessed = await access(grant, step: step)
        if accessed { report.timeToAccessMilliseconds = started.duration(to: mark).reportMilliseconds }
        // 3. Log out (also after a failed access, so that the grant does not linger).
        do {
            _ = try await client.releaseGrant(session: grant.session, token: grant.token)
            step("logout", true, "grant released")
        } catch {
            step("logout", false, "\(error.message) [\(error.code)]")
        }
        // 4. The audit trail.
        let (trailPassed, detail) = await checkTrail(client: client, grant: grant, accessed: accessed)
        step("audit", trailPassed, detail)
        report.passed = report.steps.allSatisfy(\.passed)
    }

    private func access(_ grant: IssuedGrant, step: (String, Bool, String) -> Void) async -> Bool {
        guard let address = TunnelConnector.address(gateway) else {
            step("connect", false, "gateway \(gateway) must be https://HOST:PORT")
            return false
        }
        let connection: GatewayConnection
        do throws(ClientError) {
            let context = try GatewayConnection.tlsContext(caFile: caFile)
            connection = try await GatewayConnection.open(
                host: address.0, port: address.1, context: context, serverName: nil, timeout: timeout,
                trust: GatewayTrust(caFile: caFile))
            step("connect", true, "TLS to \(address.0):\(address.1)")
        } catch {
            step("connect", false, error.message)
            return false
        }
        defer { Task { await connection.close() } }
        do throws(ClientError) {
            if grant.kind == "tcp" {
                try await connection.openTunnel(pathway: grant.pathway, token: grant.token, timeout: timeout)
                if let banner {
                    let first = try await connection.readTunnel(limit: banner.utf8.count, timeout: timeout)
                    guard first.starts(with: Array(banner.utf8)) else {
                        step("tunnel", false, "the upstream's first bytes are not \"\(banner)\"")
                        return false
                    }
                }
                step("tunnel", true, banner.map { "tunnel open, banner \"\($0)\"" } ?? "tunnel open")
            } else {
                let response = try await connection.request(
                    .GET, "/p/\(grant.pathway)\(path.hasPrefix("/") ? path : "/" + path)",
                    headers: [("Authorization", "Bearer \(grant.token)")], timeout: timeout)
                guard response.status < 500 else {
                    step(
                        "request", false,
                        "GET \(path) answered \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
                    return false
                }
                step("request", true, "GET \(path) answered \(response.status), \(response.bodyBytes) bytes")
            }
            return true
        } catch {
            step(grant.kind == "tcp" ? "tunnel" : "request", false, error.message)
            return false
        }
    }

    private func checkTrail(client: GatewayClient, grant: IssuedGrant, accessed: Bool) async -> (Bool, String) {
        var last = "no answer"
        for attempt in 0..<3 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(200)) }
            let answer: AuditTrailAnswer
            do {
                answer = try await client.auditTrail(token: grant.token)
            } catch {
                last = "\(error.message) [\(error.code)]"
                continue
            }
            var entries: [AuditInclusion.Entry] = []
            for entry in answer.records {
                let bytes = Array(entry.record.utf8)
                guard let record = try? AuditRecord(decoding: bytes) else { return (false, "record \(entry.index) does not parse") }
                let proof = entry.proof.compactMap { Data(base64Encoded: $0).map(Array.init) }
                guard proof.count == entry.proof.count else { return (false, "record \(entry.index) has a malformed proof") }
                entries.append(AuditInclusion.Entry(index: entry.index, bytes: bytes, record: record, proof: proof))
            }
            guard let verifier = auditKey ?? NoteVerifier(keyString: answer.verifierKey) else {
                return (false, "the gateway's checkpoint key \(answer.verifierKey) does not parse")
            }
            if let problem = AuditInclusion(checkpoint: answer.checkpoint, entries: entries).problem(verifier: verifier) {
                return (false, problem)
            }
            let kinds = Set(entries.map(\.record.event.kind.rawValue))
            var missing = ["grant.issued", "grant.released"].filter { !kinds.contains($0) }
            if accessed && !kinds.contains("request") && !kinds.contains("tunnel.opened") { missing.append("request or tunnel.opened") }
            let tagged = entries.contains { $0.record.event.kind == .grantIssued && $0.record.event.fields["tag"] == .string("drill") }
            if !tagged { missing.append("grant.issued tagged drill") }
            if missing.isEmpty {
                let pinned = auditKey == nil ? " (key named by the gateway; pass --audit-key to pin it)" : ""
                return (true, "\(entries.count) records proven in a checkpoint signed by \(verifier.name)\(pinned)")
            }
            last = "the trail lacks \(missing.joined(separator: ", "))"
        }
        return (false, last)
    }
}
