import BreakGlassCore
import BreakGlassTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

/// A review of the data path after its move to state machines (issue 18): attacks on what the
/// gateway lets pass between requests, sessions and upstream connections.
@Suite struct DataPathReviewTests {
    /// An upstream that speaks raw HTTP/1.1 bytes: on each connection, request N (counted by the end
    /// of its head; requests here have no body) gets `answers[N]`, or the last one.
    final class RawUpstream: Sendable {
        let port: Int
        private let channel: any Channel

        /// `later`: bytes written on each connection this long after its first answer.
        init(answers: [String], later: (delay: TimeAmount, bytes: String)? = nil) async throws {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Answerer(answers: answers, later: later))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .get()
            guard let port = channel.localAddress?.port else { throw TestSupportError("the raw upstream did not bind") }
            self.port = port
        }

        func stop() async {
            try? await channel.close()
        }

        final class Answerer: ChannelInboundHandler {
            typealias InboundIn = ByteBuffer
            typealias OutboundOut = ByteBuffer
            private let answers: [String]
            private let later: (delay: TimeAmount, bytes: String)?
            private var received = ""
            private var served = 0

            init(answers: [String], later: (delay: TimeAmount, bytes: String)?) {
                self.answers = answers
                self.later = later
            }

            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                received += String(buffer: unwrapInboundIn(data))
                while let end = received.range(of: "\r\n\r\n") {
                    received.removeSubrange(received.startIndex..<end.upperBound)
                    let answer = answers[min(served, answers.count - 1)]
                    served += 1
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
                    if served == 1, let later {
                        let channel = context.channel
                        context.eventLoop.scheduleTask(in: later.delay) {
                            channel.writeAndFlush(ByteBuffer(string: later.bytes), promise: nil)
                        }
                    }
                }
            }
        }
    }

    /// alice's request, then (after `pause`) bob's, on one client connection, so that both are on
    /// one event loop (the pool's place) and bob may get the upstream connection alice's exchange
    /// used; bob's answer as the client read it: "second" on that connection, or "first" on a new one.
    static func bobsAnswer(upstream: RawUpstream, pause: Duration = .zero) async throws -> String {
        let policy = """
            pathways:
              split:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: { users: [alice, bob] }

            """
        let gateway = try await TestGateway(policyBody: policy)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        let alice = try await PathAttackTests.login(gateway, client, user: "alice", pathway: "split")
        let bob = try await PathAttackTests.login(gateway, client, user: "bob", pathway: "split")
        let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
        try await connection.send("GET /p/split/a HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(alice)\r\n\r\n")
        #expect(await connection.wait { $0.text.hasSuffix("first") || $0.isClosed })
        let first = connection.text
        if pause > .zero { try await Task.sleep(for: pause) }
        try await connection.send("GET /p/split/b HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(bob)\r\n\r\n")
        await connection.wait {
            $0.text.count > first.count && ($0.text.hasSuffix("second") || $0.text.hasSuffix("first") || $0.isClosed)
        }
        let answer = String(connection.text.dropFirst(first.count))
        await connection.close()
        await client.shutdown()
        await gateway.stop()
        return answer
    }

    /// An upstream answers alice's request and, in the same bytes, begins another answer that nobody
    /// asked for (an upstream that splits its responses, or echoes what a user sent, can be made to).
    /// The gateway pooled that connection with the unfinished answer still in its decoder, and bob's
    /// next request on the connection got an answer whose head alice wrote: bytes after an answer
    /// must keep the connection out of the pool.
    @Test func bytesAfterAnAnswerKeepTheUpstreamConnectionOutOfThePool() async throws {
        let upstream = try await RawUpstream(answers: [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + "HTTP/1.1 200 OK\r\nX-Injected-By-Alice: yes\r\nX-Swallow: ",
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond",
        ])
        let answer = try await Self.bobsAnswer(upstream: upstream)
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(!answer.contains("X-Injected-By-Alice"), "bob's answer carries a head alice's exchange left behind: \(answer)")
        await upstream.stop()
    }

    /// The same injection, with the unasked bytes sent a moment after the answer (another read,
    /// while the connection waits in the pool): bytes an idle connection receives close it, even
    /// when they do not make up a whole part yet.
    @Test func bytesAnIdleConnectionReceivesKeepItOutOfThePool() async throws {
        let upstream = try await RawUpstream(
            answers: ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"],
            later: (.milliseconds(100), "HTTP/1.1 200 OK\r\nX-Injected-By-Alice: yes\r\nX-Swallow: "))
        let answer = try await Self.bobsAnswer(upstream: upstream, pause: .milliseconds(400))
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        #expect(!answer.contains("X-Injected-By-Alice"), "bob's answer carries a head sent while the connection was idle: \(answer)")
        await upstream.stop()
    }

    /// A CONNECT client sends its request and half-closes; the upstream then answers with more
    /// than the buffers hold and closes, while the client is not reading. Every byte must arrive:
    /// the tunnel closed the client's connection as soon as the upstream's closed, dropping what
    /// was queued for it.
    @Test func aTunnelDeliversTheWholeAnswerAfterTheClientHalfCloses() async throws {
        let size = 16 << 20
        let upstream = try await GlueHandlerTests.answeringUpstream(size: size)
        let port = try #require(upstream.localAddress?.port)
        let policy = """
            pathways:
              db:
                kind: tcp
                upstream: 127.0.0.1:\(port)
                allow: { users: [alice] }

            """
        let gateway = try await TestGateway(policyBody: policy)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        let token = try await PathAttackTests.login(gateway, client, user: "alice", pathway: "db")
        // Only the answer's head is kept; the 16 MiB are counted.
        let tunnel = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath, keep: 4096)
        try await tunnel.send("CONNECT db:\(port) HTTP/1.1\r\nProxy-Authorization: Bearer \(token)\r\n\r\n")
        #expect(await tunnel.wait { $0.text.contains("\r\n\r\n") || $0.isClosed })
        let head = tunnel.received
        try await tunnel.pauseReading()
        try await tunnel.send("the request\n")
        try await tunnel.closeOutput()
        try await Task.sleep(for: .milliseconds(500))
        try await tunnel.resumeReading()
        await tunnel.wait(timeout: .seconds(20)) { $0.isClosed || $0.received - head >= size }
        #expect(tunnel.received - head == size, "the client got \(tunnel.received - head) of \(size) bytes")
        await tunnel.close()
        await client.shutdown()
        await gateway.stop()
        try? await upstream.close()
    }

    /// The deliberate change of 72b562f, held: a client that leaves while its request is on a
    /// pooled upstream connection ends the exchange without a retry, and leaves no reservation,
    /// claim or upstream connection behind.
    @Test func aClientLeavingDuringAPooledRequestLeavesNothingBehind() async throws {
        let upstream = try await TestUpstream()
        let policy = """
            pathways:
              web:
                kind: http
                upstream: http://127.0.0.1:\(upstream.port)
                allow: { users: [alice] }

            """
        let gateway = try await TestGateway(policyBody: policy)
        let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
        let token = try await PathAttackTests.login(gateway, client, user: "alice", pathway: "web")
        let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
        try await connection.send("GET /p/web/echo/one HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\n\r\n")
        #expect(await connection.wait { $0.text.contains("echo\\/one") || $0.text.contains("echo/one") })
        let pool = gateway.service.proxy.pool
        let session = try #require(gateway.audit.events(.request).first?.fields["session"]?.description)
        // The answer comes long after the client leaves, so on a busy machine too the exchange ends
        // by the client's leaving and not by its answer (which would pool the connection again).
        try await connection.send("GET /p/web/slow/4000 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(token)\r\n\r\n")
        // The client leaves once the request holds the pooled connection (leaving before that is
        // `aClientThatLeavesDuringAuthorizationHoldsNothing`, and the idle connection stays pooled).
        #expect(await Self.eventually { pool.inUse(session: session) == 1 })
        try await Task.sleep(for: .milliseconds(50))
        await connection.close()
        let settled = await Self.eventually(timeout: .seconds(3)) {
            pool.openConnections(pathway: "web") == 0 && gateway.audit.openReservations == 0
                && gateway.audit.events(.request).count == 2
        }
        #expect(settled, "open: \(pool.openConnections(pathway: "web")), reservations: \(gateway.audit.openReservations)")
        let outcomes = gateway.audit.events(.request).compactMap { $0.fields["outcome"]?.description }
        #expect(!outcomes.contains { $0.contains("retried") }, "\(outcomes)")
        await client.shutdown()
        await gateway.stop()
        await upstream.stop()
    }

    static func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }
}
