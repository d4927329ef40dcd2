import BreakGlassAPI
import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassClient
import BreakGlassCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// One self-test round, the way a client would do it: a real PAM login for probe grants, then per
/// pathway (a few at once) a TLS connection to the gateway's own listener, the probe's request or
/// tunnel through it, the release of the grant, and finally the round's audit records proven
/// included in a fresh signed checkpoint. Every step is timed.
struct ProbeRunner: Sendable {
    struct Target: Sendable {
        var host: String
        var port: Int
        var serverName: String?
        var tls: NIOSSLContext
    }

    let settings: ProbeSettings
    let target: Target
    let auditLog: AuditLog?

    typealias ProbeGrant = ProbeGrantsAnswer.Grant

    /// Reads the gateway's answers (times in ISO 8601).
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// Runs the round for `pathways` with the one-time code of `step`.
    func run(pathways: [Pathway], credentials: ProbeCredentials, step: Int64) async -> ProbeRoundReport {
        let startedAt = Date()
        let started = ContinuousClock.now
        let probed = pathways.filter { $0.probe != .disabled }
        var report = ProbeRoundReport(startedAt: startedAt, milliseconds: 0, login: nil, pathways: [], checks: [])
        guard !probed.isEmpty else { return report }
        let grants: [String: ProbeGrant]
        switch await login(pathways: probed.map(\.name), credentials: credentials, step: step) {
        case .failure(let failure):
            report.pathways = probed.map {
                PathwayProbeResult(pathway: $0.name, probe: $0.probe.summary, session: nil, steps: [], failure: failure, finishedAt: Date())
            }
            report.milliseconds = started.duration(to: .now).reportMilliseconds
            return report
        case .success(let (issued, time)):
            grants = Dictionary(issued.map { ($0.pathway, $0) }, uniquingKeysWith: { first, _ in first })
            report.login = ProbeStep(name: "login", milliseconds: time)
        }
        var results = await withTaskGroup(of: PathwayProbeResult.self) { group in
            var results: [PathwayProbeResult] = []
            var pending = probed.makeIterator()
            func next() -> Bool {
                guard let pathway = pending.next() else { return false }
                let grant = grants[pathway.name]
                group.addTask { await self.probe(pathway, grant: grant) }
                return true
            }
            for _ in 0..<settings.parallelism where !next() { break }
            for await result in group {
                results.append(result)
                _ = next()
            }
            return results.sorted { $0.pathway < $1.pathway }
        }
        await checkAudit(&results, since: startedAt)
        report.pathways = results
        report.milliseconds = started.duration(to: .now).reportMilliseconds
        return report
    }

    // MARK: steps

    private func login(pathways: [String], credentials: ProbeCredentials, step: Int64) async -> Result<([ProbeGrant], Double), ProbeFailure>
    {
        let started = ContinuousClock.now
        // The login is not one pathway's probe: PAM may be queued behind engineers' logins.
        let deadline = started.advanced(by: max(settings.timeout, .seconds(5)))
        do throws(ClientError) {
            let connection = try await open(deadline: deadline)
            defer { Task { await connection.close() } }
            let body: [String: Any] = [
                "user": settings.user, "password": credentials.password, "otp": credentials.code(step: step), "pathways": pathways,
            ]
            let data = (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
            let response = try await connection.request(
                .POST, "/v1/probe/grants", headers: [("Content-Type", "application/json")], body: Array(data),
                timeout: Self.remaining(deadline))
            guard response.status == 201, let decoded = try? Self.decoder.decode(ProbeGrantsAnswer.self, from: Data(response.body)) else {
                return .failure(
                    ProbeFailure(step: "login", message: "the gateway answered \(response.status): \(Self.errorText(response))", at: Date())
                )
            }
            return .success((decoded.grants, started.duration(to: .now).reportMilliseconds))
        } catch {
            return .failure(ProbeFailure(step: "login", message: error.message, at: Date(), code: error.code))
        }
    }

    private func probe(_ pathway: Pathway, grant: ProbeGrant?) async -> PathwayProbeResult {
        var result = PathwayProbeResult(
            pathway: pathway.name, probe: pathway.probe.summary, session: grant?.session, steps: [], failure: nil, finishedAt: Date())
        guard let grant else {
            result.failure = ProbeFailure(step: "login", message: "the gateway issued no probe grant for this pathway", at: Date())
            return result
        }
        let deadline = ContinuousClock.now.advanced(by: settings.timeout)
        var current = "connect"
        var connection: GatewayConnection?
        do throws(ClientError) {
            var mark = ContinuousClock.now
            func lap(_ name: String) {
                let now = ContinuousClock.now
                result.steps.append(ProbeStep(name: name, milliseconds: mark.duration(to: now).reportMilliseconds))
                mark = now
            }
            let opened = try await open(deadline: deadline)
            connection = opened
            lap("connect")
            switch pathway.probe {
            case .http(let method, let path, let status, let bodyContains):
                current = "request"
                let response = try await opened.request(
                    HTTPMethod(rawValue: method), "/p/\(pathway.name)\(path)", headers: [("Authorization", "Bearer \(grant.token)")],
                    timeout: Self.remaining(deadline))
                lap("request")
                guard status.contains(response.status) else {
                    let expected = status.count == 1 ? "\(status.lowerBound)" : "\(status.lowerBound)-\(status.upperBound)"
                    throw ClientError(
                        code: "unexpected",
                        message: "\(method) \(path) answered \(response.status) (\(Self.errorText(response))), expected \(expected)")
                }
                if let bodyContains, !response.text.contains(bodyContains) {
                    throw ClientError(code: "unexpected", message: "\(method) \(path) answered without \"\(bodyContains)\" in its body")
                }
            case .tcp(let banner):
                current = "tunnel"
                try await opened.openTunnel(pathway: pathway.name, token: grant.token, timeout: Self.remaining(deadline))
                lap("tunnel")
                if let banner {
                    current = "banner"
                    let first = try await opened.readTunnel(limit: banner.utf8.count, timeout: Self.remaining(deadline))
                    lap("banner")
                    guard first.starts(with: Array(banner.utf8)) else {
                        let seen = String(decoding: first.prefix(40), as: UTF8.self).unicodeScalars.map {
                            $0.isASCII && $0.value >= 0x20 ? String($0) : "."
                        }.joined()
                        throw ClientError(code: "unexpected", message: "the upstream's first bytes are \"\(seen)\", expected \"\(banner)\"")
                    }
                }
            case .disabled:
                break
            }
            await opened.close()
            connection = nil
            current = "release"
            // On a connection of its own: a release cuts every connection the session used.
            let second = try await open(deadline: deadline)
            connection = second
            try await release(grant, on: second, deadline: deadline)
            lap("release")
        } catch {
            result.failure = ProbeFailure(step: current, message: error.message, at: Date(), code: error.code)
            if current != "release" { await releaseQuietly(grant, deadline: deadline) }
        }
        await connection?.close()
        result.finishedAt = Date()
        return result
    }

    private func release(_ grant: ProbeGrant, on connection: GatewayConnection, deadline: ContinuousClock.Instant) async throws(ClientError)
    {
        let response = try await connection.request(
            .DELETE, "/v1/grants/\(grant.session)", headers: [("Authorization", "Bearer \(grant.token)")], timeout: Self.remaining(deadline)
        )
        guard response.status == 200 else {
            throw ClientError(
                code: "unexpected", message: "releasing the probe grant answered \(response.status): \(Self.errorText(response))")
        }
    }

    /// After a failure the grant is still released, so that it does not linger (best effort).
    private func releaseQuietly(_ grant: ProbeGrant, deadline: ContinuousClock.Instant) async {
        let extended = max(deadline, ContinuousClock.now.advanced(by: .seconds(2)))
        guard let connection = try? await open(deadline: extended) else { return }
        try? await release(grant, on: connection, deadline: extended)
        await connection.close()
    }

    /// Checks that each passed pathway's session is on the record: its grant, its request or tunnel
    /// and its release, each proven included in a checkpoint signed after the round.
    private func checkAudit(_ results: inout [PathwayProbeResult], since: Date) async {
        guard let auditLog else { return }
        let sessions = Set(results.filter(\.passed).compactMap(\.session))
        guard !sessions.isEmpty else { return }
        let started = ContinuousClock.now
        var missing: [String: String] = [:]
        var problem: String?
        // A tunnel's or request's record is queued as the connection ends; give it a moment.
        for attempt in 0..<4 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(50 * attempt)) }
            do {
                // A writer stuck on a hung disk must not hang the round: the proof gets the probe's timeout.
                let proving = Task {
                    try await auditLog.proveRecent(since: since.addingTimeInterval(-1)) { record in
                        if case .string(let session) = record.event.fields["session"] { return sessions.contains(session) }
                        return false
                    }
                }
                guard let inclusion = try await Self.within(settings.timeout, proving) else {
                    problem = "the audit log did not prove the round's records within \(settings.timeout.policyText)"
                    break
                }
                if let failure = inclusion.problem(verifier: auditLog.signer.verifier) {
                    problem = failure
                    break
                }
                var kinds: [String: Set<String>] = [:]
                for entry in inclusion.entries {
                    if case .string(let session) = entry.record.event.fields["session"] {
                        kinds[session, default: []].insert(entry.record.event.kind.rawValue)
                    }
                }
                missing = [:]
                for session in sessions {
                    let seen = kinds[session] ?? []
                    var absent = ["grant.issued", "grant.released"].filter { !seen.contains($0) }
                    if !seen.contains("request") && !seen.contains("tunnel.opened") { absent.append("request or tunnel.opened") }
                    if !absent.isEmpty { missing[session] = absent.joined(separator: ", ") }
                }
                problem = nil
                if missing.isEmpty { break }
            } catch {
                problem = "proving the round's records failed: \((error as? AuditLogError)?.message ?? "\(error)")"
                break
            }
        }
        let elapsed = started.duration(to: .now).reportMilliseconds
        for index in results.indices where results[index].passed {
            results[index].steps.append(ProbeStep(name: "audit", milliseconds: elapsed))
            if let problem {
                results[index].failure = ProbeFailure(step: "audit", message: problem, at: Date())
            } else if let session = results[index].session, let absent = missing[session] {
                results[index].failure = ProbeFailure(
                    step: "audit", message: "the audit log has no \(absent) record for probe session \(session)", at: Date())
            }
        }
    }

    // MARK: helpers

    private func open(deadline: ContinuousClock.Instant) async throws(ClientError) -> GatewayConnection {
        try await GatewayConnection.open(
            host: target.host, port: target.port, context: target.tls, serverName: target.serverName, timeout: Self.remaining(deadline))
    }

    /// The task's value, or nil when it takes longer than `limit` (the task is left to finish alone).
    static func within<Value: Sendable>(_ limit: Duration, _ task: Task<Value, any Error>) async throws -> Value? {
        let first = FirstAnswer<Value>()
        return try await withCheckedThrowingContinuation { continuation in
            first.set(continuation)
            Task {
                do {
                    first.answer(.success(try await task.value))
                } catch {
                    first.answer(.failure(error))
                }
            }
            Task {
                try? await Task.sleep(for: limit)
                first.answer(.success(nil))
            }
        }
    }

    static func remaining(_ deadline: ContinuousClock.Instant) -> Duration {
        max(.milliseconds(1), ContinuousClock.now.duration(to: deadline))
    }

    static func errorText(_ response: GatewayConnection.Response) -> String {
        // The upstream's own body is not repeated: health reports are read by more people than the upstream's.
        response.gatewayError ?? "\(response.bodyBytes) bytes from the upstream"
    }
}

/// Resumes a continuation with the first of several answers.
private final class FirstAnswer<Value: Sendable>: Sendable {
    private let state = Mutex<(CheckedContinuation<Value?, any Error>?, Result<Value?, any Error>?)>((nil, nil))

    func set(_ continuation: CheckedContinuation<Value?, any Error>) {
        let early = state.withLock { state -> Result<Value?, any Error>? in
            if let answer = state.1 { return answer }
            state.0 = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func answer(_ result: Result<Value?, any Error>) {
        let waiting = state.withLock { state -> CheckedContinuation<Value?, any Error>? in
            guard state.1 == nil else { return nil }
            state.1 = result
            defer { state.0 = nil }
            return state.0
        }
        waiting?.resume(with: result)
    }
}
