import BreakGlassCore
import Foundation
import Testing

@Suite struct DurationTests {
    @Test(arguments: [
        ("90s", 90_000), ("15m", 900_000), ("1h", 3_600_000), ("1h30m", 5_400_000), ("2d", 172_800_000), ("500ms", 500),
        ("1m30s", 90_000),
    ])
    func parses(_ text: String, _ milliseconds: Int64) {
        #expect(Duration(policyText: text)?.totalMilliseconds == milliseconds)
    }

    @Test(arguments: ["", "2x", "15", "m", "1.5h", "-5m", "1h 30m", "99999999999999999h", "15M"])
    func rejects(_ text: String) {
        #expect(Duration(policyText: text) == nil)
    }

    @Test func printsShortestText() {
        #expect(Duration.seconds(5400).policyText == "1h30m")
        #expect(Duration.milliseconds(1500).policyText == "1s500ms")
    }
}

@Suite struct AddressTests {
    @Test func ipv4BlockContains() throws {
        let block = try #require(CIDRBlock("10.0.0.0/8"))
        let inside = try #require(IPAddress("10.200.1.2"))
        let outside = try #require(IPAddress("11.0.0.1"))
        let other = try #require(IPAddress("::1"))
        #expect(block.contains(inside))
        #expect(!block.contains(outside))
        #expect(!block.contains(other))
    }

    @Test func mappedIPv6IsIPv4() throws {
        let block = try #require(CIDRBlock("127.0.0.0/8"))
        let mapped = try #require(IPAddress("::ffff:127.0.0.1"))
        #expect(mapped.isIPv4)
        #expect(block.contains(mapped))
    }

    @Test func ipv6Block() throws {
        let block = try #require(CIDRBlock("fd00::/8"))
        let inside = try #require(IPAddress("fd12:3456::1"))
        let outside = try #require(IPAddress("fe80::1"))
        #expect(block.contains(inside))
        #expect(!block.contains(outside))
        #expect(IPAddress("fd12:3456::1")?.description == "fd12:3456::1")
    }

    @Test(arguments: ["10.0.0.1/8", "10.0.0.0/33", "banana", "10.0.0.0/", "1.2.3.4/x", "::/129"])
    func rejectsBadBlocks(_ text: String) {
        #expect(CIDRBlock(text) == nil)
    }
}

@Suite struct PolicyDecisionTests {
    static func policy() throws -> Policy {
        let gateway = GatewaySettings(
            id: "g",
            listen: ListenAddress(host: "127.0.0.1", port: 8443),
            tlsCertificate: "/c",
            tlsPrivateKey: "/k",
            tokenKey: "/t",
            pam: PAMSettings(service: "breakglass", confdir: nil),
            lockout: LockoutPolicy()
        )
        let upstream = try #require(Upstream("http://127.0.0.1:9001", kind: .http))
        let loopback = try #require(CIDRBlock("127.0.0.0/8"))
        let api = Pathway(
            name: "status-api",
            kind: .http,
            upstream: upstream,
            allowUsers: ["carol"],
            allowGroups: ["sre"],
            defaultDuration: .seconds(900),
            maxDuration: .seconds(3600),
            requireTicket: try TicketPattern("^INC-[0-9]+$"),
            sourceCIDRs: [loopback]
        )
        return Policy(gateway: gateway, groups: ["sre": ["alice"]], pathways: ["status-api": api])
    }

    static let local = IPAddress("127.0.0.1")

    @Test func allowsGroupMemberWithDefaultDuration() throws {
        let decision = try Self.policy().decide(
            GrantRequest(user: "alice", pathway: "status-api", reason: "db down", ticket: "INC-1", source: Self.local)
        )
        #expect(
            decision
                == .allow(GrantTerms(user: "alice", pathway: "status-api", reason: "db down", ticket: "INC-1", duration: .seconds(900))))
    }

    @Test func allowsListedUser() throws {
        let decision = try Self.policy().decide(
            GrantRequest(user: "carol", pathway: "status-api", reason: "x", ticket: "INC-2", duration: .seconds(3600), source: Self.local)
        )
        guard case .allow(let terms) = decision else {
            Issue.record("expected allow, got \(decision)")
            return
        }
        #expect(terms.duration == .seconds(3600))
    }

    @Test func deniesWithReasons() throws {
        let policy = try Self.policy()
        func code(_ request: GrantRequest) -> (String, String)? {
            if case .deny(let error) = policy.decide(request) { return (error.code.rawValue, error.message) }
            return nil
        }
        let unknown = code(GrantRequest(user: "alice", pathway: "nope", reason: "x", ticket: "INC-1", source: Self.local))
        #expect(unknown?.0 == "unknown_pathway")
        let stranger = code(GrantRequest(user: "mallory", pathway: "status-api", reason: "x", ticket: "INC-1", source: Self.local))
        #expect(stranger?.0 == "forbidden")
        #expect(stranger?.1.contains("not allowed") == true)
        let noTicket = code(GrantRequest(user: "alice", pathway: "status-api", reason: "x", source: Self.local))
        #expect(noTicket?.0 == "forbidden")
        #expect(noTicket?.1.contains("requires a ticket") == true)
        let badTicket = code(GrantRequest(user: "alice", pathway: "status-api", reason: "x", ticket: "INC-12x", source: Self.local))
        #expect(badTicket?.1.contains("does not match") == true)
        let tooLong = code(
            GrantRequest(user: "alice", pathway: "status-api", reason: "x", ticket: "INC-1", duration: .seconds(7200), source: Self.local)
        )
        #expect(tooLong?.1 == "duration 2h exceeds max_duration 1h of pathway status-api")
        let outside = code(GrantRequest(user: "alice", pathway: "status-api", reason: "x", ticket: "INC-1", source: IPAddress("192.0.2.1")))
        #expect(outside?.0 == "forbidden")
        #expect(outside?.1.contains("192.0.2.1") == true)
    }

    @Test func shapeChecks() {
        #expect(GrantRequest(user: "alice", pathway: "p", reason: "  ").shapeError()?.code == .invalidRequest)
        #expect(GrantRequest(user: "al ice", pathway: "p", reason: "r").shapeError()?.code == .invalidRequest)
        #expect(GrantRequest(user: "alice", pathway: "p", reason: "line\nbreak").shapeError()?.code == .invalidRequest)
        #expect(GrantRequest(user: "alice", pathway: "p", reason: String(repeating: "r", count: 501)).shapeError() != nil)
        #expect(GrantRequest(user: "alice", pathway: "p", reason: "fine", ticket: "INC-1").shapeError() == nil)
    }

    /// The reason and ticket are bounded in bytes as well as in Characters: both go into the token and
    /// the audit record, and one Character can carry any number of combining marks. Before, ten
    /// letters with 600 marks each (12 KB) passed as a 10-character reason.
    @Test func reasonAndTicketAreBoundedInBytes() {
        let heavy = String(repeating: "a" + String(repeating: "\u{0301}", count: 600), count: 10)
        #expect(heavy.count == 10)
        #expect(GrantRequest(user: "alice", pathway: "p", reason: heavy).shapeError()?.code == .invalidRequest)
        #expect(GrantRequest(user: "alice", pathway: "p", reason: "r", ticket: heavy).shapeError()?.code == .invalidRequest)
        // 500 four-byte letters are still a valid reason.
        #expect(GrantRequest(user: "alice", pathway: "p", reason: String(repeating: "\u{1F6A8}", count: 500)).shapeError() == nil)
    }
}

@Suite struct LockoutTrackerTests {
    let policy = LockoutPolicy(failures: 3, window: .seconds(60), duration: .seconds(300), sourceFailures: 5)

    /// Failures of one user at one source lock that pair; elsewhere the user is only delayed, so
    /// that nobody can lock a named user out from another address.
    @Test func locksUserAtSourceAfterFailuresInWindow() {
        var tracker = LockoutTracker(policy: policy)
        let start = ContinuousClock.now
        tracker.recordFailure(user: "alice", source: "a", now: start)
        tracker.recordFailure(user: "alice", source: "a", now: start.advanced(by: .seconds(1)))
        #expect(tracker.status(user: "alice", source: "a", now: start.advanced(by: .seconds(2))) == .open)
        tracker.recordFailure(user: "alice", source: "a", now: start.advanced(by: .seconds(2)))
        guard case .locked(let retry, let scope) = tracker.status(user: "alice", source: "a", now: start.advanced(by: .seconds(3))) else {
            Issue.record("alice should be locked at a")
            return
        }
        #expect(scope == .user)
        #expect(retry == .seconds(299))
        #expect(tracker.status(user: "alice", source: "z", now: start.advanced(by: .seconds(3))) == .delayed(.seconds(1)))
        #expect(tracker.status(user: "alice", source: "a", now: start.advanced(by: .seconds(303))) == .open)
    }

    @Test func oldFailuresFallOutOfWindow() {
        var tracker = LockoutTracker(policy: policy)
        let start = ContinuousClock.now
        tracker.recordFailure(user: "bob", source: "s", now: start)
        tracker.recordFailure(user: "bob", source: "s", now: start.advanced(by: .seconds(1)))
        tracker.recordFailure(user: "bob", source: "s", now: start.advanced(by: .seconds(70)))
        #expect(tracker.status(user: "bob", source: "t", now: start.advanced(by: .seconds(71))) == .open)
    }

    @Test func locksSourceAcrossUsers() {
        var tracker = LockoutTracker(policy: policy)
        let now = ContinuousClock.now
        for index in 0..<5 { tracker.recordFailure(user: "user\(index)", source: "10.0.0.9", now: now) }
        guard case .locked(_, let scope) = tracker.status(user: "fresh", source: "10.0.0.9", now: now) else {
            Issue.record("source should be locked")
            return
        }
        #expect(scope == .source)
        #expect(tracker.status(user: "fresh", source: "10.0.0.10", now: now) == .open)
    }

    @Test func successClearsUserFailures() {
        var tracker = LockoutTracker(policy: policy)
        let now = ContinuousClock.now
        tracker.recordFailure(user: "carol", source: "s", now: now)
        tracker.recordFailure(user: "carol", source: "s", now: now)
        tracker.recordSuccess(user: "carol", source: "s")
        tracker.recordFailure(user: "carol", source: "s", now: now)
        #expect(tracker.status(user: "carol", source: "t", now: now) == .open)
    }

    @Test func attemptsInProgressCountTowardTheLimit() {
        var tracker = LockoutTracker(policy: policy)
        let now = ContinuousClock.now
        for _ in 0..<3 { #expect(tracker.admit(user: "eve", source: "s", now: now) == .open) }
        guard case .locked(_, let scope) = tracker.admit(user: "eve", source: "s", now: now) else {
            Issue.record("a fourth parallel attempt was admitted with a limit of three")
            return
        }
        #expect(scope == .user)
        tracker.recordSuccess(user: "eve", source: "s")
        #expect(tracker.admit(user: "eve", source: "s", now: now) == .open)
        #expect(IPAddress("2001:db8:1:2:3:4:5:6")?.lockoutKey == "2001:db8:1:2::/64")
        #expect(IPAddress("192.0.2.7")?.lockoutKey == "192.0.2.7")
    }

    @Test func memoryIsBounded() {
        var tracker = LockoutTracker(policy: policy, maximumEntries: 100)
        let now = ContinuousClock.now
        for index in 0..<1000 { tracker.recordFailure(user: "u\(index)", source: "s\(index)", now: now) }
        #expect(tracker.trackedCount <= 102)
    }
}
