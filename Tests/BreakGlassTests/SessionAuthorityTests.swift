import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassGateway
import BreakGlassTestSupport
import BreakGlassTokens
import Foundation
import Logging
import NIOEmbedded
import NIOPosix
import Testing

/// A valid signature is not enough: the gateway admits only sessions it issued, to the user and for
/// the pathway it issued them, and rebuilds what it issued from the audit log at start (issue #16,
/// item 9). Tokens here are forged with the gateway's own signing key, as after a leak.
@Suite struct SessionAuthorityTests {
    /// A token authority holding the gateway's own key: it signs anything.
    static func forger(_ gateway: TestGateway) async throws -> TokenAuthority {
        let key = try TokenSigningKey.load(path: gateway.directory.file("token-key.pem"))
        return await TokenAuthority(issuer: "test-gateway", key: key)
    }

    static func forge(
        _ forger: TokenAuthority, session: String = Grant.newSessionID(), user: String, pathway: String, lifetime: TimeInterval = 600
    ) async throws -> String {
        let now = Date()
        return try await forger.issue(
            Grant(
                session: session, user: user, pathway: pathway, reason: "forged", ticket: nil, issuedAt: now,
                expiresAt: now.addingTimeInterval(lifetime), amr: ["pwd", "otp"], source: nil))
    }

    @Test func forgedTokensWithTheGatewaysKeyAreRefused() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let alice = try await fixture.login("alice", pathway: "web")
        let forger = try await Self.forger(fixture.gateway)

        // A session never issued, for a user the policy does not know.
        let stranger = try await fixture.get("/p/web/echo", token: try await Self.forge(forger, user: "mallory", pathway: "web"))
        #expect(stranger.status == 401, "\(stranger.text)")
        #expect(stranger.errorCode == "invalid_token")
        #expect(stranger.errorMessage?.contains("not issued") == true, "\(stranger.text)")
        // Alice's real session, claimed by carol.
        let carol = try await fixture.get(
            "/p/web/echo", token: try await Self.forge(forger, session: alice.session, user: "carol", pathway: "web"))
        #expect(carol.status == 401, "\(carol.text)")
        #expect(carol.errorCode == "invalid_token")
        // Alice's real session, for another pathway.
        let based = try await fixture.get(
            "/p/based/echo", token: try await Self.forge(forger, session: alice.session, user: "alice", pathway: "based"))
        #expect(based.status == 401, "\(based.text)")
        #expect(based.errorCode == "invalid_token")
        // A CONNECT with a forged session is refused too.
        let tunnel = try await fixture.tunnel("echo", token: try await Self.forge(forger, user: "alice", pathway: "echo"))
        #expect(tunnel.text.hasPrefix("HTTP/1.1 401"), "\(tunnel.text)")
        await tunnel.close()

        // Nothing forged reached the upstream; alice's own grant still works.
        #expect(fixture.events(.request).isEmpty)
        let real = try await fixture.get("/p/web/echo", token: alice.token)
        #expect(real.status == 200, "\(real.text)")
        #expect(fixture.events(.request).map { $0.fields["session"] } == [.string(alice.session)])
    }

    /// Releasing a session the gateway never issued records nothing and ends nothing.
    /// Before the fix the release tracked the token's session and then ended it.
    @Test func forgedReleasesAreRefused() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let alice = try await fixture.login("alice", pathway: "web")
        let forger = try await Self.forger(fixture.gateway)
        let session = Grant.newSessionID()
        let unknown = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(session)",
            headers: [("Authorization", "Bearer \(try await Self.forge(forger, session: session, user: "mallory", pathway: "web"))")])
        #expect(unknown.status == 401, "\(unknown.text)")
        // Alice's session released by a token claiming carol.
        let stolen = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(alice.session)",
            headers: [
                ("Authorization", "Bearer \(try await Self.forge(forger, session: alice.session, user: "carol", pathway: "web"))")
            ])
        #expect(stolen.status == 401, "\(stolen.text)")
        #expect(fixture.events(.grantReleased).isEmpty)
        #expect(try await fixture.get("/p/web/echo", token: alice.token).status == 200)
    }

    /// Sessions issued before a restart are rebuilt from the audit log: live ones keep working,
    /// released ones stay refused, and forged ones stay unknown.
    @Test func sessionsAreRebuiltFromTheAuditLogAcrossARestart() async throws {
        let fixture = try await ProxyTests.fixture(durableAudit: true)
        let alice = try await fixture.login("alice", pathway: "web")
        let bob = try await fixture.login("bob", pathway: "web")
        let released = try await fixture.client.request(
            .DELETE, fixture.gateway.baseURL + "/v1/grants/\(bob.session)", headers: [("Authorization", "Bearer \(bob.token)")])
        #expect(released.status == 200, "\(released.text)")
        let forger = try await Self.forger(fixture.gateway)
        let unknownBefore = try await Self.forge(forger, user: "alice", pathway: "web")
        #expect(try await fixture.get("/p/web/echo", token: unknownBefore).status == 401)

        let restarted = try await fixture.gateway.restarted()
        let client = try HTTPSTestClient(caPath: restarted.pki.caPath)
        func get(_ token: String, pathway: String = "web") async throws -> HTTPSTestClient.Response {
            try await client.request(.GET, restarted.baseURL + "/p/\(pathway)/echo", headers: [("Authorization", "Bearer \(token)")])
        }
        let aliceAfter = try await get(alice.token)
        #expect(aliceAfter.status == 200, "\(aliceAfter.text)")
        let bobAfter = try await get(bob.token)
        #expect(bobAfter.status == 401)
        #expect(bobAfter.errorMessage?.contains("released") == true, "\(bobAfter.text)")
        let unknownAfter = try await get(unknownBefore)
        #expect(unknownAfter.status == 401)
        #expect(unknownAfter.errorMessage?.contains("not issued") == true, "\(unknownAfter.text)")
        let fresh = try await get(try await Self.forge(forger, user: "mallory", pathway: "web"))
        #expect(fresh.status == 401)
        let stolen = try await get(try await Self.forge(forger, session: alice.session, user: "carol", pathway: "web"))
        #expect(stolen.status == 401)
        let elsewhere = try await get(
            try await Self.forge(forger, session: alice.session, user: "alice", pathway: "based"), pathway: "based")
        #expect(elsewhere.status == 401)
        #expect(try await get(alice.token).status == 200)

        await client.shutdown()
        await fixture.client.shutdown()
        await fixture.upstream.stop()
        await fixture.echo.stop()
        await restarted.stop()
    }

    // MARK: the registry and the log, without a gateway

    /// Kept in memory, not printed: the failures these tests provoke are expected.
    static let logger = TestLog().logger(label: "test", level: .critical)

    static func info(
        _ session: String, user: String = "alice", pathway: String = "web", seconds: TimeInterval = 600
    )
        -> SessionRegistry.SessionInfo
    {
        let now = Date()
        return SessionRegistry.SessionInfo(
            session: session, user: user, pathway: pathway, issuedAt: now, expiresAt: now.addingTimeInterval(seconds))
    }

    static func recorded(_ info: SessionRegistry.SessionInfo, ending: String? = nil) -> RecordedSession {
        RecordedSession(
            session: info.session, user: info.user, pathway: info.pathway, issuedAt: info.issuedAt, expiresAt: info.expiresAt,
            tag: info.tag?.rawValue, ending: ending)
    }

    /// Without a log (the in-memory sink) sessions are known from issuance only.
    @Test func theRegistryAdmitsOnlyWhatItIssued() async throws {
        let registry = SessionRegistry(
            audit: MemoryAuditSink(), clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: nil,
            logger: Self.logger)
        // Thread-safe, unlike EmbeddedChannel: an async test may resume on another thread.
        let channel = NIOAsyncTestingChannel()
        let issued = Self.info("issued")
        #expect(registry.admit(issued, channel: channel)?.message.contains("not issued") == true)
        // Refused once, still unknown: admission does not start tracking.
        #expect(registry.admit(issued, channel: channel) != nil)
        registry.track(issued)
        #expect(registry.admit(issued, channel: channel) == nil)
        var carol = issued
        carol.user = "carol"
        #expect(registry.admit(carol, channel: channel)?.code == .invalidToken)
        var elsewhere = issued
        elsewhere.pathway = "grafana"
        #expect(registry.admit(elsewhere, channel: channel)?.code == .invalidToken)
        var unprobed = issued
        unprobed.tag = .probe
        #expect(registry.admit(unprobed, channel: channel)?.code == .invalidToken)
        // A later expiry in the token does not outlive the recorded one.
        var longer = issued
        longer.expiresAt = issued.expiresAt.addingTimeInterval(3600)
        #expect(registry.admit(longer, channel: channel) == nil)
        #expect(registry.check(issued) == nil)
        #expect(registry.check(carol)?.code == .invalidToken)
        #expect(registry.check(Self.info("other"))?.code == .invalidToken)
        _ = try? await channel.finish()
    }

    /// The log is the source of truth: the sessions file cannot add a session the log never
    /// issued, and an end in either one ends the session.
    @Test func theLogWinsOverTheSessionsFile() async throws {
        let folder = try TestDirectory("sessions-log")
        defer { folder.remove() }
        let file = folder.file("ended-sessions.json")
        let live = Self.info("live")
        let forged = Self.info("forged")
        let endedInLog = Self.info("ended-in-log")
        let endedInFile = Self.info("ended-in-file")
        let onlyInLog = Self.info("only-in-log")
        let revokedOnlyInLog = Self.info("revoked-only-in-log")
        let expiredWhileDown = Self.info("expired-while-down", seconds: -5)
        let first = SessionRegistry(
            audit: MemoryAuditSink(), clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file,
            logger: Self.logger)
        for info in [live, forged, endedInLog, endedInFile] { first.track(info) }
        await first.end(["ended-in-file"], as: .revoked, by: "operator")
        await first.flush()

        let audit = MemoryAuditSink()
        let log = TestLog()
        let second = SessionRegistry(
            audit: audit, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file,
            logger: log.logger(label: "test", level: .critical))
        #expect(second.isLive("forged"))
        var carol = live
        carol.user = "carol"
        await second.restore(
            from: .success([
                Self.recorded(live), Self.recorded(endedInLog, ending: "released"), Self.recorded(endedInFile),
                Self.recorded(onlyInLog), Self.recorded(revokedOnlyInLog, ending: "revoked"), Self.recorded(expiredWhileDown),
            ]))
        let channel = NIOAsyncTestingChannel()
        #expect(second.admit(live, channel: channel) == nil)
        #expect(second.admit(carol, channel: channel) != nil)
        #expect(second.admit(forged, channel: channel)?.message.contains("not issued") == true)
        #expect(second.admit(endedInLog, channel: channel)?.message.contains("released") == true)
        #expect(second.admit(endedInFile, channel: channel)?.message.contains("revoked") == true)
        #expect(second.admit(onlyInLog, channel: channel) == nil)
        #expect(second.admit(revokedOnlyInLog, channel: channel)?.message.contains("revoked") == true)
        #expect(log.contains("the sessions file names sessions that the audit log never issued"))
        // A grant the log shows live whose expiry passed while the gateway was down gets its record.
        await second.recordExpiredWhileDown()
        #expect(audit.events(.grantExpired).map { $0.fields["session"] } == [.string("expired-while-down")])
        await second.flush()
        let kept = try String(contentsOfFile: file, encoding: .utf8)
        #expect(!kept.contains("\"forged\""))

        // A log that cannot be read fails closed: nothing from before the start is admitted.
        let third = SessionRegistry(
            audit: MemoryAuditSink(), clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, endedFile: file,
            logger: log.logger(label: "test", level: .critical))
        await third.restore(from: .failure(AuditLogError(.corrupt, "test")))
        #expect(log.contains("cannot read the grants issued from the audit log"))
        #expect(third.admit(live, channel: channel)?.message.contains("log in again") == true)
        let after = Self.info("after-start")
        third.track(after)
        #expect(third.admit(after, channel: channel) == nil)
        _ = try? await channel.finish()
    }

    /// Issued sessions and their ends are read back from a real log, from the segments recent enough.
    @Test func issuedSessionsAreReadBackFromTheLog() async throws {
        let folder = try TestDirectory("sessions-read")
        defer { folder.remove() }
        let directory = folder.file("audit")
        let log = try AuditLog.open(
            directory: directory, origin: "test-gateway", signer: NoteSigner(name: "test-gateway", privateKey: .init()),
            options: AuditLogOptions(segmentSize: 4096), logger: Self.logger)
        let now = Date()
        func grant(_ session: String, user: String = "alice", at time: Date, tag: Grant.Tag? = nil) -> Grant {
            Grant(
                session: session, user: user, pathway: "web", reason: "r", ticket: nil, issuedAt: time,
                expiresAt: time.addingTimeInterval(600), amr: ["pwd"], source: nil, tag: tag)
        }
        // An old grant, then enough requests to fill segments, then recent grants and ends.
        try await log.record(.grantIssued(grant("old", at: now.addingTimeInterval(-86_400)), tokenSHA256: "x"))
        for index in 0..<60 {
            try await log.record(
                AuditEvent(kind: .request, time: now.addingTimeInterval(-80_000), fields: ["path": .string("/filler/\(index)")]))
        }
        try await log.record(.grantIssued(grant("a", at: now.addingTimeInterval(-10)), tokenSHA256: "x"))
        try await log.record(.grantIssued(grant("b", user: "bob", at: now.addingTimeInterval(-5), tag: .probe), tokenSHA256: "x"))
        try await log.record(AuditEvent(kind: .grantRevoked, time: now, fields: ["session": .string("b")]))
        try await log.record(AuditEvent(kind: .grantReleased, time: now, fields: ["session": .string("old")]))
        await log.close()

        let recent = try AuditSessions.issued(directory: directory, since: now.addingTimeInterval(-3600))
        #expect(recent.map(\.session) == ["a", "b"])
        #expect(recent.first?.user == "alice" && recent.last?.user == "bob")
        #expect(recent.first?.ending == nil && recent.last?.ending == "revoked")
        #expect(recent.last?.tag == "probe")
        if let first = recent.first {
            #expect(abs(first.expiresAt.timeIntervalSince(now.addingTimeInterval(590))) < 0.002)
        }
        let all = try AuditSessions.issued(directory: directory, since: .distantPast)
        #expect(all.map(\.session) == ["old", "a", "b"])
        #expect(all.first?.ending == "released")
        #expect(throws: AuditLogError.self) { try AuditSessions.issued(directory: folder.file("missing"), since: .distantPast) }
    }
}
