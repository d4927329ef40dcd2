import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import BreakGlassGateway
import BreakGlassTestSupport
import Foundation
import Logging
import NIOPosix
import Testing

/// Issue #16 item 3, grant side: refusals without valid credentials cannot fill the audit log.
@Suite struct GrantFloodTests {
    /// Bytes of framed records in the durable log.
    static func logBytes(_ directory: String) throws -> Int {
        try AuditLogReader.read(directory: directory, decode: false).entries.reduce(0) {
            $0 + $1.bytes.count + SegmentFormat.frameHeaderSize
        }
    }

    /// 10,000 malformed or unauthenticated grant requests from one source grow the log by at most
    /// 64 KiB (the issue's bound), and a grant from another source is still served.
    @Test func tenThousandRefusalsFromOneSourceStaySmall() async throws {
        let gateway = try await TestGateway(durableAudit: true)
        defer { Task { await gateway.stop() } }
        let log = try #require(gateway.service.auditLog)
        let before = try Self.logBytes(log.directory)

        let filler = String(repeating: "x", count: 400)
        let bodies = [
            "{\"user\": \"alice\", \"\(filler)\": 1",  // not JSON
            "{\"user\": \"alice\", \"password\": \"p\", \"pathway\": \"grafana\", \"reason\": \"r\", \"\(filler)\": 1}",  // unknown field
            TestGateway.grantBody(user: "alice", password: "p", otp: "1", pathway: "grafana", reason: String(repeating: "r", count: 501)),
            TestGateway.grantBody(user: "al ice\(filler.prefix(60))", password: "p", otp: "1", pathway: "grafana", reason: filler),
            TestGateway.grantBody(user: "alice", password: "", otp: "1", pathway: "grafana", reason: filler, ticket: "INC-1"),
            TestGateway.grantBody(user: "alice", password: "p", otp: "1", pathway: "grafana", reason: filler, duration: "forever"),
        ]
        let perConnection = 500
        let batch = 50
        let total = 10_000
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var sent = worker * total / 4
                    while sent < (worker + 1) * total / 4 {
                        let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.2")
                        var answered = 0
                        while answered < perConnection {
                            let requests = (0..<batch).map { TLSTestConnection.grantRequest(bodies[(sent + $0) % bodies.count]) }
                            try await connection.send(requests.joined())
                            sent += batch
                            answered += batch
                            let done = await connection.wait(timeout: .seconds(60)) { $0.statuses.count >= answered }
                            if !done { throw TestSupportError("\(answered - connection.statuses.count) answers missing") }
                        }
                        #expect(connection.statuses.allSatisfy { (400..<500).contains($0) })
                        Task { await connection.close() }
                    }
                }
            }
            try await group.waitForAll()
        }

        // The summaries are written at the end of their interval; shutdown writes what is open.
        await gateway.service.denials.flush()
        let elapsed = ContinuousClock.now - started
        // A legitimate grant from another source; its record is durable when it is answered.
        let alice = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.3")
        let body = TestGateway.grantBody(
            user: "alice", password: gateway.pam.password("alice"), otp: try await gateway.pam.code("alice"), pathway: "grafana")
        try await alice.send(TLSTestConnection.grantRequest(body))
        await alice.wait(timeout: .seconds(10)) { !$0.statuses.isEmpty }
        #expect(alice.statuses == [201], "\(alice.text.prefix(400))")
        Task { await alice.close() }

        let grown = try Self.logBytes(log.directory) - before
        #expect(grown <= 64 << 10, "the audit log grew by \(grown) bytes")
        // Every refusal is counted in a summary of its source, and no string in them is long.
        let records = try AuditLogReader.read(directory: log.directory).entries.compactMap(\.record).map(\.event)
        let summaries = records.filter { $0.kind == .grantDenied && $0.fields["source"] == .string("127.0.0.2") }
        let counted = summaries.reduce(Int64(0)) {
            if case .integer(let count) = $1.fields["count"] { return $0 + count }
            return $0
        }
        #expect(counted == Int64(total))
        // One summary per interval the flood lasted, plus the partial intervals at either end: the
        // count follows the flood's duration, which a busy machine stretches.
        let intervals = Int((elapsed / GatewayLimits().denialInterval).rounded(.up))
        #expect(summaries.count <= intervals + 2, "\(summaries.count) summaries for a flood of \(elapsed)")
        for event in summaries {
            for case .string(let text) in event.fields.values { #expect(text.utf8.count <= DenialLedger.fieldLimit) }
        }
    }
}

/// Issue #16 item 3, data path: refused `/p/` requests without valid credentials cannot fill the
/// audit log either.
@Suite struct ProxyFloodTests {
    /// 10,000 proxied requests from one source without a token, with a garbage one, or with a
    /// token in the wrong header grow the log by at most 64 KiB; a grant from another source is
    /// still served, and its token admitted.
    @Test func tenThousandTokenlessRequestsFromOneSourceStaySmall() async throws {
        let gateway = try await TestGateway(durableAudit: true)
        defer { Task { await gateway.stop() } }
        let log = try #require(gateway.service.auditLog)
        let before = try GrantFloodTests.logBytes(log.directory)

        let filler = String(repeating: "x", count: 400)
        let requests = [
            "GET /p/grafana/\(filler) HTTP/1.1\r\nHost: gw\r\n\r\n",
            "GET /p/grafana/ HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(filler)\r\n\r\n",
            "GET /p/\(filler.prefix(60))/ HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic \(filler)\r\n\r\n",
            "HEAD /p/grafana/?token=\(filler) HTTP/1.1\r\nHost: gw\r\n\r\n",
        ]
        let total = 10_000
        let batch = 100
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.2")
                    var sent = 0
                    while sent < total / 4 {
                        let lines = (0..<batch).map { requests[(worker + sent + $0) % requests.count] }
                        try await connection.send(lines.joined())
                        sent += batch
                        let done = await connection.wait(timeout: .seconds(60)) { $0.statuses.count >= sent }
                        if !done { throw TestSupportError("\(sent - connection.statuses.count) answers missing") }
                    }
                    #expect(connection.statuses.allSatisfy { $0 == 401 || $0 == 404 })
                    await connection.close()
                }
            }
            try await group.waitForAll()
        }
        await gateway.service.denials.flush()

        let otp = try await gateway.pam.code("alice")
        let login = TLSTestConnection.grantRequest(
            TestGateway.grantBody(user: "alice", password: gateway.pam.password("alice"), otp: otp, pathway: "grafana"))
        let alice = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, source: "127.0.0.3")
        try await alice.send(login)
        await alice.wait(timeout: .seconds(10)) { !$0.statuses.isEmpty }
        #expect(alice.statuses == [201], "\(alice.text.prefix(400))")
        await alice.close()

        let grown = try GrantFloodTests.logBytes(log.directory) - before
        #expect(grown <= 64 << 10, "the audit log grew by \(grown) bytes")
        let records = try AuditLogReader.read(directory: log.directory).entries.compactMap(\.record).map(\.event)
        let summaries = records.filter { $0.kind == .requestDenied && $0.fields["source"] == .string("127.0.0.2") }
        let counted = summaries.reduce(Int64(0)) {
            if case .integer(let count) = $1.fields["count"] { return $0 + count }
            return $0
        }
        #expect(counted == Int64(total), "\(summaries)")
        for event in summaries {
            for case .string(let text) in event.fields.values { #expect(text.utf8.count <= DenialLedger.fieldLimit) }
        }
    }
}

/// The per-source summary of refusals, with an in-memory sink.
@Suite struct DenialLedgerTests {
    static func ledger(
        _ sink: MemoryAuditSink, interval: Duration = .seconds(3600), maximumSources: Int = 4096
    ) -> DenialLedger {
        DenialLedger(
            audit: sink, clock: SystemWallClock(), group: MultiThreadedEventLoopGroup.singleton, interval: { interval },
            maximumSources: maximumSources, logger: TestLog().logger(label: "denial-ledger-test"))
    }

    static func refusal(_ source: String, reason: String = "outage", kind: AuditEvent.Kind = .grantDenied) -> AuditEvent {
        AuditEvent(
            kind: kind, time: Date(),
            fields: ["source": .string(source), "code": .string("invalid_request"), "reason": .string(reason)])
    }

    static func count(_ event: AuditEvent) -> Int64? {
        if case .integer(let count) = event.fields["count"] { return count }
        return nil
    }

    @Test func refusalsFromOneSourceBecomeOneRecordWithTheirCount() async {
        let sink = MemoryAuditSink()
        let ledger = Self.ledger(sink)
        for index in 0..<250 { ledger.count(Self.refusal("192.0.2.1", reason: "try \(index)"), source: "192.0.2.1") }
        #expect(sink.events.isEmpty)
        await ledger.flush()
        let records = sink.events
        #expect(records.count == 1)
        #expect(records.first.map(Self.count) == 250)
        #expect(records.first?.fields["reason"] == .string("try 0"))
        #expect(records.first?.fields["last_at"] != nil)
        #expect(ledger.openBuckets == 0)
        await ledger.flush()
        #expect(sink.events.count == 1)
    }

    @Test func eachSourceAndKindHasItsOwnRecord() async {
        let sink = MemoryAuditSink()
        let ledger = Self.ledger(sink)
        for _ in 0..<3 { ledger.count(Self.refusal("192.0.2.1"), source: "192.0.2.1") }
        for _ in 0..<5 { ledger.count(Self.refusal("192.0.2.2"), source: "192.0.2.2") }
        ledger.count(Self.refusal("192.0.2.2", kind: .requestDenied), source: "192.0.2.2")
        // IPv6 sources are counted per /64.
        ledger.count(Self.refusal("2001:db8::1"), address: IPAddress("2001:db8::1"))
        ledger.count(Self.refusal("2001:db8::2"), address: IPAddress("2001:db8::2"))
        await ledger.flush()
        let counts = Dictionary(
            sink.events.map { ("\($0.kind) \($0.fields["source"]?.description ?? "")", Self.count($0) ?? -1) },
            uniquingKeysWith: +)
        #expect(
            counts == [
                "grant.denied 192.0.2.1": 3, "grant.denied 192.0.2.2": 5, "request.denied 192.0.2.2": 1, "grant.denied 2001:db8::1": 2,
            ])
    }

    @Test func sourcesBeyondTheBoundShareTheOverflowRecord() async {
        let sink = MemoryAuditSink()
        let ledger = Self.ledger(sink, maximumSources: 4)
        for index in 0..<100 { ledger.count(Self.refusal("10.0.0.\(index)"), source: "10.0.0.\(index)") }
        for index in 0..<100 { ledger.count(Self.refusal("10.0.0.\(index)"), source: "10.0.0.\(index)") }
        #expect(ledger.openBuckets == 5)
        await ledger.flush()
        let records = sink.events
        #expect(records.count == 5)
        let overflow = records.filter { $0.fields["source"] == .string(DenialLedger.overflowSource) }
        #expect(overflow.count == 1)
        #expect(overflow.first.map(Self.count) == 192)
        #expect(records.compactMap(Self.count).reduce(0, +) == 200)
    }

    @Test func aBucketIsRecordedWhenItsIntervalEnds() async {
        let sink = MemoryAuditSink()
        let ledger = Self.ledger(sink, interval: .milliseconds(100))
        for _ in 0..<7 { ledger.count(Self.refusal("192.0.2.9"), source: "192.0.2.9") }
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while sink.events.isEmpty && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        #expect(sink.events.map(Self.count) == [7])
        // The next refusal opens a new bucket.
        ledger.count(Self.refusal("192.0.2.9"), source: "192.0.2.9")
        let second = ContinuousClock.now.advanced(by: .seconds(10))
        while sink.events.count < 2 && ContinuousClock.now < second { try? await Task.sleep(for: .milliseconds(20)) }
        #expect(sink.events.map(Self.count) == [7, 1])
    }

    @Test func senderTextIsBounded() {
        let long = String(repeating: "é", count: 500)
        let event = DenialLedger.bounded(
            AuditEvent(
                kind: .grantDenied, time: Date(),
                fields: ["reason": .string(long), "ok": .string("short"), "list": .strings(Array(repeating: long, count: 40))]))
        guard case .string(let reason) = event.fields["reason"], case .strings(let list) = event.fields["list"] else {
            Issue.record("fields changed kind")
            return
        }
        #expect(reason.utf8.count <= DenialLedger.fieldLimit)
        #expect(reason.hasSuffix("…"))
        #expect(reason.hasPrefix("éé"))
        #expect(event.fields["ok"] == .string("short"))
        #expect(list.count == DenialLedger.listLimit)
        #expect(list.allSatisfy { $0.utf8.count <= DenialLedger.fieldLimit })
    }
}
