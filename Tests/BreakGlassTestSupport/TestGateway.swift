import BreakGlassCore
import BreakGlassGateway
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// A real gateway for tests: fresh certificates and keys, a real PAM stack, a policy file, a TLS
/// listener on 127.0.0.1 with a free port, and an in-memory audit sink.
public final class TestGateway: Sendable {
    public let directory: TestDirectory
    public let pki: TestPKI
    public let pam: PAMTestStack
    /// The in-memory sink; unused when the gateway runs with its durable log (`service.auditLog`).
    public let audit: MemoryAuditSink
    public let policyPath: String
    public let service: GatewayService
    /// The gateway's log lines (warnings and worse), kept rather than printed; see `TestLog`.
    public let log: TestLog
    public let port: Int
    private let group: ServiceGroup
    private let runner: Task<Void, any Error>
    private let clock: any WallClock
    private let durableAudit: Bool

    /// The gateway's base URL, e.g. `https://127.0.0.1:40123`.
    public var baseURL: String { "https://127.0.0.1:\(port)" }

    /// The default pathways and groups for tests.
    public static let defaultPolicyBody = """
        groups:
          sre: [alice, bob]
        pathways:
          status-api:
            kind: http
            upstream: http://127.0.0.1:9001
            allow: { users: [carol], groups: [sre] }
            default_duration: 15m
            max_duration: 1h
            require_ticket: "^INC-[0-9]+$"
          grafana:
            kind: http
            upstream: http://127.0.0.1:9002
            allow: { users: [alice, bob, carol, dave] }
            default_duration: 10m
            max_duration: 30m
          office-only:
            kind: tcp
            upstream: 127.0.0.1:5432
            allow: { users: [alice, bob, carol, dave] }
            source_cidrs: [10.0.0.0/8]

        """

    /// Starts a gateway. `users` maps user names to passwords for the PAM stack; `limits` is the
    /// `gateway.limits` section (YAML flow mapping), when not the defaults.
    public convenience init(
        users: [String: String] = ["alice": "alice-password", "bob": "bob-password", "carol": "carol-password", "dave": "dave-password"],
        lockout: String = "{ failures: 5, window: 5m, duration: 15m, source_failures: 50 }",
        limits: String? = nil,
        failureDelay: String = "50ms",
        policyBody: String = TestGateway.defaultPolicyBody,
        clock: any WallClock = SystemWallClock(),
        durableAudit: Bool = false,
        certificateValidity: Duration = .seconds(30 * 86_400),
        probes: String? = nil,
        gatewayKeys: String = ""
    ) async throws {
        let directory = try TestDirectory("breakglass-gateway")
        let pki = try TestPKI(in: directory, validity: certificateValidity)
        var users = users
        var probeSection = ""
        if let probes {
            // The probe identity: a PAM user of its own, its secrets in a private file. pam_oath gets
            // a wide window so that back-to-back rounds need not wait for new time steps.
            users[TestGateway.probeUser] = "probe-password-\(UInt32.random(in: 0...UInt32.max))"
            probeSection = """
                probes:
                  user: \(TestGateway.probeUser)
                  credentials: probe.credentials
                  ca: tls/ca.pem
                  \(probes.replacingOccurrences(of: "\n", with: "\n  "))

                """
        }
        let pam = try await PAMTestStack(in: directory, users: users, window: probes == nil ? 2 : 12)
        if probes != nil, let probe = pam.users[TestGateway.probeUser] {
            _ = try directory.write(
                "probe.credentials", "password: \(probe.password)\ntotp_secret: \(probe.secret)\nwindow: 12\n", mode: 0o600)
        }
        let policy = """
            gateway:
              id: test-gateway
              listen: 127.0.0.1:0
              tls: { certificate: tls/server.pem, private_key: tls/server-key.pem }
              token_key: token-key.pem
              pam: { service: \(pam.service), confdir: pam/pam.d, failure_delay: \(failureDelay) }
              lockout: \(lockout)
              audit: { directory: audit, key: audit-key.pem }
            \(limits.map { "  limits: \($0)\n" } ?? "")\(gatewayKeys.isEmpty ? "" : "  \(gatewayKeys)\n")

            """ + probeSection + policyBody
        let policyPath = try directory.write("policy.yaml", policy)
        try await self.init(directory: directory, pki: pki, pam: pam, policyPath: policyPath, clock: clock, durableAudit: durableAudit)
    }

    private init(
        directory: TestDirectory, pki: TestPKI, pam: PAMTestStack, policyPath: String, clock: any WallClock, durableAudit: Bool
    ) async throws {
        let audit = MemoryAuditSink()
        let log = TestLog()
        let logger = log.logger(label: "test-gateway")
        // The audit folder exists, as in production, so that the admin socket can be made there
        // even with the in-memory sink.
        if !durableAudit {
            try FileManager.default.createDirectory(
                atPath: directory.file("audit"), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let (addresses, continuation) = AsyncStream.makeStream(of: SocketAddress?.self)
        let service = try await GatewayService(policyPath: policyPath, audit: durableAudit ? nil : audit, clock: clock, logger: logger) {
            address in
            continuation.yield(address)
            continuation.finish()
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: service.services, logger: logger))
        let runner = Task { try await group.run() }
        var bound: Int?
        for await address in addresses {
            bound = address?.port
        }
        guard let bound else {
            runner.cancel()
            throw TestSupportError("the test gateway did not start listening")
        }
        self.directory = directory
        self.pki = pki
        self.pam = pam
        self.audit = audit
        self.policyPath = policyPath
        self.service = service
        self.log = log
        self.port = bound
        self.group = group
        self.runner = runner
        self.clock = clock
        self.durableAudit = durableAudit
    }

    /// Stops this gateway (keeping its folder) and starts a new one on the same folder, keys and
    /// policy, as after a restart; it listens on a new port.
    /// `whileDown` runs between the stop and the start (to damage files, as a crash or an operator might).
    public func restarted(whileDown: () throws -> Void = {}) async throws -> TestGateway {
        await group.triggerGracefulShutdown()
        _ = try? await runner.value
        try whileDown()
        return try await TestGateway(
            directory: directory, pki: pki, pam: pam, policyPath: policyPath, clock: clock, durableAudit: durableAudit)
    }

    /// Stops the gateway gracefully and removes its folder.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await runner.value
        directory.remove()
    }

    /// The probe identity's user name in gateways started with `probes:`.
    public static let probeUser = "probe"

    /// A JSON body for `POST /v1/grants`.
    public static func grantBody(
        user: String,
        password: String,
        otp: String?,
        pathway: String,
        reason: String = "test outage",
        ticket: String? = nil,
        duration: String? = nil
    ) -> String {
        var object: [String: String] = ["user": user, "password": password, "pathway": pathway, "reason": reason]
        object["otp"] = otp
        object["ticket"] = ticket
        object["duration"] = duration
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
