import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassConfig
import BreakGlassCore
import BreakGlassTestSupport
import BreakGlassTokens
import Crypto
import Foundation
import JWTKit
import Testing

@Suite struct GatewayAPITests {
    /// Runs `body` against a fresh gateway and a client that trusts its CA.
    func withGateway(
        lockout: String = "{ failures: 5, window: 5m, duration: 15m, source_failures: 50 }",
        _ body: (TestGateway, HTTPSTestClient) async throws -> Void
    ) async throws {
        let gateway = try await TestGateway(lockout: lockout)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        do {
            try await body(gateway, client)
        } catch {
            await client.shutdown()
            await gateway.stop()
            throw error
        }
        await client.shutdown()
        await gateway.stop()
    }

    func grant(
        _ gateway: TestGateway,
        _ client: HTTPSTestClient,
        user: String,
        password: String? = nil,
        otp: String? = nil,
        pathway: String = "grafana",
        ticket: String? = nil,
        duration: String? = nil
    ) async throws -> HTTPSTestClient.Response {
        let code: String?
        if let otp { code = otp } else { code = try await gateway.pam.code(user) }
        let body = TestGateway.grantBody(
            user: user,
            password: password ?? gateway.pam.password(user),
            otp: code,
            pathway: pathway,
            ticket: ticket,
            duration: duration
        )
        return try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body)
    }

    @Test func grantAfterRealPAMLoginVerifiesWithPublishedJWKS() async throws {
        try await withGateway { gateway, client in
            let response = try await grant(gateway, client, user: "alice", pathway: "status-api", ticket: "INC-42", duration: "30m")
            #expect(response.status == 201, "\(response.text)")
            let json = response.json
            let token = try #require(json["token"] as? String)
            #expect(json["user"] as? String == "alice")
            #expect(json["pathway"] as? String == "status-api")
            #expect((json["session"] as? String)?.count == 32)
            let formatter = ISO8601DateFormatter()
            let issuedText = try #require(json["issued_at"] as? String)
            let expiresText = try #require(json["expires_at"] as? String)
            let issued = try #require(formatter.date(from: issuedText))
            let expires = try #require(formatter.date(from: expiresText))
            #expect(abs(expires.timeIntervalSince(issued) - 1800) < 1.5)
            #expect(response.headers.first(name: "server-timing")?.contains("pam;dur=") == true)

            let jwks = try await client.request(.GET, gateway.baseURL + "/.well-known/jwks.json")
            #expect(jwks.status == 200)
            let keys = try await JWTKeyCollection().add(jwksJSON: jwks.text)
            let claims = try await keys.verify(token, as: GrantClaims.self)
            #expect(claims.aud.value == ["status-api"])
            #expect(claims.iss.value == "test-gateway")
            #expect(claims.ticket == "INC-42")
            #expect(claims.amr == ["pwd", "otp", "mfa"])
            #expect(claims.jti.value == json["session"] as? String)

            let current = try await client.request(
                .GET, gateway.baseURL + "/v1/grants/current", headers: [("Authorization", "Bearer \(token)")])
            #expect(current.status == 200)
            #expect(current.json["session"] as? String == json["session"] as? String)
            #expect((current.json["expires_in_seconds"] as? Int ?? 0) > 1700)

            let issuedEvents = gateway.audit.events(.grantIssued)
            #expect(issuedEvents.count == 1)
            let event = try #require(issuedEvents.first)
            #expect(event.fields["user"] == .string("alice"))
            #expect(event.fields["ticket"] == .string("INC-42"))
            #expect(event.fields["source"] == .string("127.0.0.1"))
            #expect(event.fields["token_sha256"] == .string(TokenAuthority.tokenHash(token)))
            let everything = gateway.audit.events.map { "\($0.fields)" }.joined()
            #expect(!everything.contains(token))
            #expect(!everything.contains(gateway.pam.password("alice")))
        }
    }

    /// `GET /v1/grants/current` reports the session's real state (issue 19 item 1). Before, a
    /// released or revoked grant was reported as valid until its token expired, while the proxy
    /// refused it.
    @Test func currentGrantReportsReleasedAndRevokedSessions() async throws {
        try await withGateway { gateway, client in
            var tokens: [String] = []
            var sessions: [String] = []
            for step in 0..<3 {
                // A code of a later step each time: pam_oath refuses a code used before.
                let code = try await gateway.pam.code("alice", steps: step)
                let issued = try await grant(gateway, client, user: "alice", otp: code, pathway: "status-api", ticket: "INC-42")
                #expect(issued.status == 201, "\(issued.text)")
                tokens.append(try #require(issued.json["token"] as? String))
                sessions.append(try #require(issued.json["session"] as? String))
            }
            let released = try await client.request(
                .DELETE, gateway.baseURL + "/v1/grants/" + sessions[1], headers: [("Authorization", "Bearer \(tokens[1])")])
            #expect(released.status == 200, "\(released.text)")
            await gateway.service.proxy.registry.end([sessions[2]], as: .revoked, by: "test")
            for (token, state) in zip(tokens, ["active", "released", "revoked"]) {
                let current = try await client.request(
                    .GET, gateway.baseURL + "/v1/grants/current", headers: [("Authorization", "Bearer \(token)")])
                #expect(current.status == 200, "\(current.text)")
                #expect(current.json["state"] as? String == state, "\(current.text)")
            }
        }
    }

    /// A misspelled pathway is refused before PAM runs, so the one-time code is not used up, and the
    /// answer names the closest pathway (issue 19 item 3). Before, PAM took the code first: the
    /// second login with the same code failed.
    @Test func aMisspelledPathwayKeepsTheOneTimeCode() async throws {
        try await withGateway { gateway, client in
            let code = try await gateway.pam.code("alice")
            let misspelled = try await grant(gateway, client, user: "alice", otp: code, pathway: "grafna")
            #expect(misspelled.errorCode == "unknown_pathway", "\(misspelled.text)")
            #expect(misspelled.errorMessage?.contains("did you mean \"grafana\"") == true, "\(misspelled.text)")
            let again = try await grant(gateway, client, user: "alice", otp: code, pathway: "grafana")
            #expect(again.status == 201, "\(again.text)")
        }
    }

    /// Addresses are written as people write them (issue 19 item 6): before, the record carried NIO's
    /// `[IPv4]127.0.0.1/127.0.0.1:PORT`.
    @Test func theStartRecordNamesTheListenerAsPeopleWriteIt() async throws {
        try await withGateway { gateway, _ in
            let started = gateway.audit.events(.gatewayStarted).first
            #expect(started?.fields["listen"] == .string("127.0.0.1:\(gateway.port)"), "\(String(describing: started))")
        }
    }

    @Test func unknownUserGetsTheSameAnswerAsAWrongPassword() async throws {
        try await withGateway { gateway, client in
            let wrongPassword = try await grant(gateway, client, user: "bob", password: "not-bobs")
            let unknown = try await grant(gateway, client, user: "nobody", password: "whatever", otp: "123456")
            let wrongCode = try await grant(gateway, client, user: "carol", otp: "000000")
            for response in [wrongPassword, unknown, wrongCode] {
                #expect(response.status == 401)
                #expect(response.errorCode == "authentication_failed")
            }
            #expect(wrongPassword.body == unknown.body)
            #expect(wrongCode.body == unknown.body)
            let denied = gateway.audit.events(.grantDenied)
            #expect(denied.count == 3)
            #expect(denied.allSatisfy { $0.fields["code"] == .string("authentication_failed") })
        }
    }

    @Test func concurrentLoginsOfDifferentUsersAllSucceed() async throws {
        try await withGateway { gateway, client in
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for user in ["alice", "bob", "carol", "dave"] {
                    group.addTask { try await grant(gateway, client, user: user).status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == [201, 201, 201, 201])
            #expect(gateway.audit.events(.grantIssued).count == 4)
        }
    }

    @Test func reusedCodeIsRefused() async throws {
        try await withGateway { gateway, client in
            let code = try await gateway.pam.code("dave")
            let first = try await grant(gateway, client, user: "dave", otp: code)
            #expect(first.status == 201)
            let second = try await grant(gateway, client, user: "dave", otp: code)
            #expect(second.status == 401)
            #expect(second.errorCode == "authentication_failed")
        }
    }

    @Test func userIsLockedOutAfterFailures() async throws {
        try await withGateway(lockout: "{ failures: 2, window: 5m, duration: 15m, source_failures: 100 }") { gateway, client in
            for _ in 0..<2 {
                #expect(try await grant(gateway, client, user: "alice", password: "bad").status == 401)
            }
            // Even the right password and code are refused while the lock holds, without running PAM.
            let locked = try await grant(gateway, client, user: "alice")
            #expect(locked.status == 429)
            #expect(locked.errorCode == "locked_out")
            #expect(Int(locked.headers.first(name: "retry-after") ?? "") ?? 0 > 800)
            // Another user from the same source is not affected.
            #expect(try await grant(gateway, client, user: "bob").status == 201)
            // An unknown user locks the same way, so a lock reveals nothing either.
            for _ in 0..<2 { _ = try await grant(gateway, client, user: "ghost", password: "x", otp: "1") }
            #expect(try await grant(gateway, client, user: "ghost", password: "x", otp: "1").errorCode == "locked_out")
        }
    }

    @Test func sourceIsLockedOutAcrossUsers() async throws {
        try await withGateway(lockout: "{ failures: 100, window: 5m, duration: 15m, source_failures: 3 }") { gateway, client in
            for user in ["u1", "u2", "u3"] {
                #expect(try await grant(gateway, client, user: user, password: "x", otp: "1").status == 401)
            }
            let locked = try await grant(gateway, client, user: "carol")
            #expect(locked.status == 429)
            #expect(locked.errorCode == "locked_out")
            // Refusals before PAM are summarized per source; the summary is written at its interval's end.
            await gateway.service.denials.flush()
            #expect(gateway.audit.events(.grantDenied).last?.fields["code"] == .string("locked_out"))
        }
    }

    @Test func policyRefusalsAfterLogin() async throws {
        try await withGateway { gateway, client in
            let notAllowed = try await grant(gateway, client, user: "dave", pathway: "status-api", ticket: "INC-1")
            #expect(notAllowed.status == 403)
            #expect(notAllowed.errorMessage == "user dave is not allowed on pathway status-api")
            let noTicket = try await grant(gateway, client, user: "carol", pathway: "status-api")
            #expect(noTicket.status == 403)
            #expect(noTicket.errorMessage?.contains("requires a ticket") == true)
            let tooLong = try await grant(gateway, client, user: "bob", pathway: "grafana", duration: "2h")
            #expect(tooLong.status == 403)
            #expect(tooLong.errorMessage == "duration 2h exceeds max_duration 30m of pathway grafana")
            let unknown = try await grant(gateway, client, user: "alice", pathway: "no-such-thing")
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "unknown_pathway")
            let nextCode = try await gateway.pam.code("alice", steps: 1)
            let outside = try await grant(gateway, client, user: "alice", otp: nextCode, pathway: "office-only")
            #expect(outside.status == 403)
            #expect(outside.errorMessage == "pathway office-only does not accept requests from 127.0.0.1")
            // Four refusals after PAM, each on its own; the unknown pathway was refused before PAM
            // (the code kept), in the per-source summary written at its interval's end.
            #expect(gateway.audit.events(.grantDenied).count == 4)
            await gateway.service.denials.flush()
            #expect(gateway.audit.events(.grantDenied).last?.fields["code"] == .string("unknown_pathway"))
            #expect(gateway.audit.events(.grantIssued).isEmpty)
        }
    }

    @Test func malformedRequestsGetClearErrors() async throws {
        try await withGateway { gateway, client in
            let url = gateway.baseURL + "/v1/grants"
            let notJSON = try await client.request(.POST, url, body: "{user: alice")
            #expect(notJSON.status == 400)
            #expect(notJSON.errorMessage == "the body is not valid JSON")
            let missing = try await client.request(.POST, url, body: "{\"user\": \"alice\", \"password\": \"x\", \"pathway\": \"grafana\"}")
            #expect(missing.errorMessage == "field \"reason\" is required")
            let wrongType = try await client.request(.POST, url, body: "{\"user\": 5}")
            #expect(wrongType.errorMessage == "field \"user\" must be a string")
            let unknownField = try await client.request(
                .POST,
                url,
                body: "{\"user\": \"a\", \"password\": \"x\", \"pathway\": \"g\", \"reason\": \"r\", \"admin\": \"yes\"}"
            )
            #expect(unknownField.errorMessage?.hasPrefix("unknown field \"admin\"") == true)
            let badDuration = try await grant(gateway, client, user: "bob", duration: "forever")
            #expect(badDuration.status == 400)
            #expect(badDuration.errorMessage == "duration \"forever\" is not a duration (write e.g. 15m or 1h)")
            let huge = try await client.request(.POST, url, body: String(repeating: "x", count: 70_000))
            #expect(huge.status == 413)
            #expect(huge.errorCode == "payload_too_large")
            let wrongMethod = try await client.request(.GET, url)
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.headers.first(name: "allow") == "POST")
            let noRoute = try await client.request(.GET, gateway.baseURL + "/admin")
            #expect(noRoute.status == 404)
            #expect(noRoute.errorCode == "not_found")
            let bigHeaders = try await client.request(
                .GET, gateway.baseURL + "/v1/grants/current", headers: [("X-Filler", String(repeating: "a", count: 20_000))])
            #expect(bigHeaders.status == 431)
            let noToken = try await client.request(.GET, gateway.baseURL + "/v1/grants/current")
            #expect(noToken.status == 401)
            #expect(noToken.errorCode == "invalid_token")
            let badToken = try await client.request(
                .GET, gateway.baseURL + "/v1/grants/current", headers: [("Authorization", "Bearer a.b.c")])
            #expect(badToken.errorCode == "invalid_token")
        }
    }

    @Test func noAuditNoGrant() async throws {
        try await withGateway { gateway, client in
            gateway.audit.setFailing(true)
            let response = try await grant(gateway, client, user: "alice")
            #expect(response.status == 503)
            #expect(response.errorCode == "audit_unavailable")
            #expect(response.json["token"] == nil)
            gateway.audit.setFailing(false)
            let nextCode = try await gateway.pam.code("alice", steps: 1)
            #expect(try await grant(gateway, client, user: "alice", otp: nextCode).status == 201)
        }
    }

    @Test func reloadWithBrokenFileKeepsLastKnownGood() async throws {
        try await withGateway { gateway, client in
            let original = try String(contentsOfFile: gateway.policyPath, encoding: .utf8)
            try original.replacingOccurrences(of: "max_duration: 30m", with: "max_duration: 3x")
                .write(toFile: gateway.policyPath, atomically: true, encoding: .utf8)
            let outcome = await gateway.service.reloader.reload()
            guard case .rejected(let error, keeping: let keeping) = outcome else {
                Issue.record("a broken policy was accepted")
                return
            }
            #expect(keeping.policy.pathways.count == 3)
            #expect(error.issues.first?.keyPath == "pathways.grafana.max_duration")
            #expect(gateway.audit.events(.policyRejected).count == 1)
            // The old policy still grants.
            #expect(try await grant(gateway, client, user: "bob").status == 201)
            // A good new policy takes effect.
            try original.replacingOccurrences(
                of: "allow: { users: [alice, bob, carol, dave] }\n    default_duration: 10m",
                with: "allow: { users: [carol] }\n    default_duration: 10m"
            )
            .write(toFile: gateway.policyPath, atomically: true, encoding: .utf8)
            guard case .loaded = await gateway.service.reloader.reload() else {
                Issue.record("a good policy was refused")
                return
            }
            let refused = try await grant(gateway, client, user: "alice")
            #expect(refused.status == 403)
        }
    }
}

@Suite struct GatewayDurableAuditTests {
    /// A graceful stop runs in the order of `GatewayService.services`: the denial summary still
    /// pending is written (with the sessions file) before `gateway.stopped`, the log's last record.
    @Test func aGracefulStopRecordsWhatIsPendingBeforeTheLogCloses() async throws {
        let gateway = try await TestGateway(durableAudit: true)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        // A tokenless request: refused, and summarized per source for `denial_interval` (10 s).
        let refused = try await client.request(.GET, gateway.baseURL + "/p/grafana/")
        #expect(refused.status == 401)
        await client.shutdown()
        var kinds: [AuditEvent.Kind] = []
        let restarted = try await gateway.restarted {
            kinds = try AuditLogReader.read(directory: gateway.directory.file("audit")).entries.compactMap(\.record?.event.kind)
        }
        await restarted.stop()
        #expect(kinds.last == .gatewayStopped, "\(kinds)")
        let summary = try #require(kinds.lastIndex(of: .requestDenied), "\(kinds)")
        #expect(summary < kinds.count - 1)
    }

    @Test func grantIsOnTheDurableLogBeforeItIsAnsweredAndAStoppedLogRefusesAccess() async throws {
        let gateway = try await TestGateway(durableAudit: true)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        defer {
            Task {
                await client.shutdown()
                await gateway.stop()
            }
        }
        let log = try #require(gateway.service.auditLog)
        let code = try await gateway.pam.code("alice")
        let body = TestGateway.grantBody(user: "alice", password: gateway.pam.password("alice"), otp: code, pathway: "grafana")
        let response = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body)
        #expect(response.status == 201)
        let token = try #require(response.json["token"] as? String)
        // Answered means durable: the record is already in the segment files.
        let records = try AuditLogReader.read(directory: gateway.directory.file("audit")).entries.compactMap(\.record)
        let issued = try #require(records.first { $0.event.kind == .grantIssued })
        #expect(issued.event.fields["token_sha256"] == .string(TokenAuthority.tokenHash(token)))
        #expect(issued.gateway == "test-gateway")
        #expect(records.map(\.event.kind).prefix(2) == [.policyLoaded, .gatewayStarted])

        // The log stops (as after an fsync error): new grants are refused with audit_unavailable.
        await log.close()
        let next = TestGateway.grantBody(
            user: "bob",
            password: gateway.pam.password("bob"),
            otp: try await gateway.pam.code("bob"),
            pathway: "grafana"
        )
        let refused = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: next)
        #expect(refused.status == 503)
        #expect(refused.errorCode == "audit_unavailable")
        #expect(refused.json["token"] == nil)
    }
}
