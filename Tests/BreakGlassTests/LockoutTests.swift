import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import Testing

/// The login limits with plain values: a lock per (user, source), a cap per source, and a
/// progressive delay per user across sources.
@Suite struct LockoutTests {
    let policy = LockoutPolicy(failures: 3, window: .seconds(60), duration: .seconds(300), sourceFailures: 5, userDelayMax: .seconds(5))
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start.advanced(by: .seconds(seconds)) }

    @Test func failuresLockTheUserAtThatSourceOnly() {
        var tracker = LockoutTracker(policy: policy)
        for second in 0..<3 { tracker.recordFailure(user: "alice", source: "a", now: at(second)) }
        guard case .locked(let retry, let scope) = tracker.admit(user: "alice", source: "a", now: at(3)) else {
            Issue.record("alice should be locked at source a")
            return
        }
        #expect(scope == .user)
        #expect(retry == .seconds(299))
        // From another source alice is not locked, only delayed (3 failures: the first step, 1 s).
        #expect(tracker.admit(user: "alice", source: "b", now: at(3)) == .delayed(.seconds(1)))
        tracker.recordSuccess(user: "alice", source: "b")
        // Another user at the locked pair's source is untouched.
        #expect(tracker.admit(user: "bob", source: "a", now: at(3)) == .open)
        tracker.recordSuccess(user: "bob", source: "a")
        // The lock runs out.
        #expect(tracker.status(user: "alice", source: "a", now: at(303)) == .open)
    }

    @Test func failuresFromOneSourceAcrossUsersLockTheSource() {
        var tracker = LockoutTracker(policy: policy)
        for index in 0..<5 { tracker.recordFailure(user: "user\(index)", source: "10.0.0.9", now: at(0)) }
        guard case .locked(_, let scope) = tracker.admit(user: "fresh", source: "10.0.0.9", now: at(1)) else {
            Issue.record("the source should be locked")
            return
        }
        #expect(scope == .source)
        #expect(tracker.admit(user: "fresh", source: "10.0.0.10", now: at(1)) == .open)
    }

    @Test func theUserDelayDoublesAndIsCapped() {
        var tracker = LockoutTracker(policy: policy)
        var delays: [LockoutTracker.Status] = []
        // Each failure from a new source: no pair or source ever locks.
        for index in 0..<8 {
            delays.append(tracker.status(user: "alice", source: "mine", now: at(index)))
            tracker.recordFailure(user: "alice", source: "s\(index)", now: at(index))
        }
        delays.append(tracker.status(user: "alice", source: "mine", now: at(8)))
        #expect(
            delays == [
                .open, .open, .open, .delayed(.seconds(1)), .delayed(.seconds(2)), .delayed(.seconds(4)), .delayed(.seconds(5)),
                .delayed(.seconds(5)), .delayed(.seconds(5)),
            ])
        // Failures age out of the window, and so does the delay.
        #expect(tracker.status(user: "alice", source: "mine", now: at(66)) == .open)
        #expect(LockoutTracker.delay(failures: 1000, policy: policy) == .seconds(5))
        // Zero turns the delay off.
        var off = policy
        off.userDelayMax = .zero
        #expect(LockoutTracker.delay(failures: 10, policy: off) == .zero)
    }

    @Test func attemptsInProgressCountTowardLimitsAndDelay() {
        var tracker = LockoutTracker(policy: policy)
        for _ in 0..<3 { #expect(tracker.admit(user: "eve", source: "s", now: at(0)) == .open) }
        guard case .locked(_, let scope) = tracker.admit(user: "eve", source: "s", now: at(0)) else {
            Issue.record("a fourth parallel attempt from one source was admitted with a limit of three")
            return
        }
        #expect(scope == .user)
        // From another source the three in progress count toward the delay.
        #expect(tracker.admit(user: "eve", source: "t", now: at(0)) == .delayed(.seconds(1)))
        tracker.recordAbandoned(user: "eve", source: "t")
        tracker.recordSuccess(user: "eve", source: "s")
        #expect(tracker.admit(user: "eve", source: "s", now: at(0)) == .open)
        for _ in 0..<3 { tracker.recordAbandoned(user: "eve", source: "s") }
        #expect(tracker.status(user: "eve", source: "s", now: at(0)) == .open)
    }

    @Test func successForgetsThatSourceOnly() {
        var tracker = LockoutTracker(policy: policy)
        tracker.recordFailure(user: "carol", source: "home", now: at(0))
        tracker.recordFailure(user: "carol", source: "home", now: at(0))
        tracker.recordFailure(user: "carol", source: "elsewhere", now: at(0))
        tracker.recordFailure(user: "carol", source: "elsewhere", now: at(0))
        #expect(tracker.status(user: "carol", source: "home", now: at(1)) == .delayed(.seconds(2)))
        #expect(tracker.admit(user: "carol", source: "home", now: at(1)) == .delayed(.seconds(2)))
        tracker.recordSuccess(user: "carol", source: "home")
        // The pair's failures are gone (two more do not lock it) and so is their part of the delay;
        // the failures from elsewhere stay.
        tracker.recordFailure(user: "carol", source: "home", now: at(2))
        tracker.recordFailure(user: "carol", source: "home", now: at(2))
        #expect(tracker.status(user: "carol", source: "home", now: at(2)) == .delayed(.seconds(2)))
        tracker.recordFailure(user: "carol", source: "elsewhere", now: at(2))
        guard case .locked = tracker.status(user: "carol", source: "elsewhere", now: at(2)) else {
            Issue.record("the pair elsewhere should have kept its failures")
            return
        }
    }

    @Test func memoryIsBounded() {
        var tracker = LockoutTracker(policy: policy, maximumEntries: 300)
        for index in 0..<5000 { tracker.recordFailure(user: "u\(index)", source: "s\(index)", now: at(0)) }
        #expect(tracker.trackedCount <= 300)
        for index in 0..<5000 {
            if case .locked = tracker.admit(user: "v\(index % 7)", source: "t\(index)", now: at(1)) { continue }
            tracker.recordAbandoned(user: "v\(index % 7)", source: "t\(index)")
        }
        #expect(tracker.trackedCount <= 300)
        // One user failing from many sources keeps a bounded list: the delay simply stays at its cap.
        for index in 0..<5000 { tracker.recordFailure(user: "target", source: "x\(index)", now: at(2)) }
        #expect(tracker.status(user: "target", source: "y", now: at(2)) == .delayed(.seconds(5)))
        #expect(tracker.trackedCount <= 300)
    }
}

/// Issue #16 item 5: failures of a user at another source cannot keep that user out.
@Suite struct LockoutAbuseTests {
    /// While 127.0.0.2 sends about 20 wrong passwords a second for alice, alice from 127.0.0.3 with
    /// her password and code gets a grant within 10 s (the issue's bound).
    @Test func anotherSourceCannotLockOutANamedResponder() async throws {
        let gateway = try await TestGateway()
        defer { Task { await gateway.stop() } }
        let wrong = TestGateway.grantBody(user: "alice", password: "not-alices-password", otp: "000000", pathway: "grafana")
        let attackers = try await withThrowingTaskGroup(of: TLSTestConnection.self) { group in
            for _ in 0..<4 {
                group.addTask { try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.2") }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let attack = Task {
            // 4 connections, one request each every 200 ms: 20 a second, for at most 30 s.
            for _ in 0..<150 where !Task.isCancelled {
                for connection in attackers { try? await connection.send(TLSTestConnection.grantRequest(wrong)) }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { attack.cancel() }
        // Enough wrong passwords went through PAM to lock alice everywhere under the old per-user rule.
        let failed = await attackers[0].wait(timeout: .seconds(20)) { _ in
            attackers.reduce(0) { $0 + $1.statuses.filter { $0 == 401 }.count } >= 5
        }
        #expect(failed)

        let alice = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.3")
        let body = TestGateway.grantBody(
            user: "alice", password: gateway.pam.password("alice"), otp: try await gateway.pam.code("alice"), pathway: "grafana")
        let sent = ContinuousClock.now
        try await alice.send(TLSTestConnection.grantRequest(body))
        await alice.wait(timeout: .seconds(10)) { !$0.statuses.isEmpty }
        let waited = sent.duration(to: .now)
        #expect(alice.statuses == [201], "alice got \(alice.text.prefix(400))")
        #expect(waited < .seconds(10))
        attack.cancel()
        // The attacking source itself is locked out for alice.
        #expect(attackers.contains { $0.statuses.contains(429) })
        await TLSTestConnection.closeAll(attackers + [alice])
    }
}

extension TLSTestConnection {
    /// Closes connections together (each close may wait for the peer's close_notify).
    static func closeAll(_ connections: [TLSTestConnection]) async {
        await withTaskGroup(of: Void.self) { group in
            for connection in connections { group.addTask { await connection.close() } }
        }
    }

    /// A raw `POST /v1/grants` with `body`, kept alive.
    static func grantRequest(_ body: String, path: String = "/v1/grants") -> String {
        "POST \(path) HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// The status codes of the answers received so far, in order.
    var statuses: [Int] { Self.statuses(in: bytes) }

    static func statuses(in bytes: [UInt8]) -> [Int] {
        let marker = Array("HTTP/1.1 ".utf8)
        var found: [Int] = []
        var index = 0
        while index + marker.count + 3 <= bytes.count {
            if bytes[index] == marker[0], bytes[index..<index + marker.count].elementsEqual(marker) {
                let digits = bytes[index + marker.count..<index + marker.count + 3]
                found.append(Int(String(decoding: digits, as: UTF8.self)) ?? 0)
                index += marker.count + 3
            } else {
                index += 1
            }
        }
        return found
    }
}
