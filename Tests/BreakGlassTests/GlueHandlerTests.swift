import BreakGlassProxy
import BreakGlassTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The tunnel's byte path: two real TCP connections joined by a `GlueHandler` pair, as the gateway
/// joins a client and a tcp pathway's upstream.
@Suite struct GlueHandlerTests {
    /// An upstream that answers once its client has finished: after the end of its input it writes
    /// `size` bytes, then closes.
    final class AnswerAfterInput: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let size: Int

        init(size: Int) {
            self.size = size
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            guard case ChannelEvent.inputClosed = event else { return }
            let answer = ByteBuffer(repeating: 0x61, count: size)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(answer)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// A listener on 127.0.0.1 whose connections are answered by `AnswerAfterInput(size:)`.
    static func answeringUpstream(size: Int) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AnswerAfterInput(size: size)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// A tunnel listener whose connections are glued to new connections to an `AnswerAfterInput`
    /// upstream, all on one event loop; `clients` gets each client-side channel.
    struct Tunnel {
        let port: Int
        let clients: AsyncStream<any Channel>
        private let channels: [any Channel]

        init(answerSize: Int, drainGrace: TimeAmount) async throws {
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let upstream = try await GlueHandlerTests.answeringUpstream(size: answerSize)
            guard let upstreamPort = upstream.localAddress?.port else { throw TestSupportError("the upstream did not bind") }
            let (clients, found) = AsyncStream<any Channel>.makeStream()
            let listener = try await ServerBootstrap(group: loop, childGroup: loop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                // Small kernel buffers, so that most of an answer waits in the glue's channel.
                .childChannelOption(.socketOption(.so_sndbuf), value: 4096)
                .childChannelInitializer { client in
                    found.yield(client)
                    return ClientBootstrap(group: client.eventLoop)
                        .channelOption(.allowRemoteHalfClosure, value: true)
                        .connect(host: "127.0.0.1", port: upstreamPort)
                        .flatMapThrowing { upstreamChannel in
                            let (clientGlue, upstreamGlue) = GlueHandler.pair(drainGrace: drainGrace)
                            try client.pipeline.syncOperations.addHandler(clientGlue)
                            try upstreamChannel.pipeline.syncOperations.addHandler(upstreamGlue)
                        }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            guard let port = listener.localAddress?.port else { throw TestSupportError("the tunnel did not bind") }
            self.port = port
            self.clients = clients
            self.channels = [listener, upstream]
        }

        func stop() async {
            for channel in channels { try? await channel.close() }
        }
    }

    /// A client that sends its request and ends its output (`shutdown(SHUT_WR)`), then reads the
    /// answer slowly to its end: every byte the upstream wrote must arrive, although both directions
    /// of the client's connection have ended by the time the upstream closes, with much of the answer
    /// still queued in the gateway (a glue that closes the channel then drops what is queued).
    @Test func anAnswerAfterBothHalfClosesArrivesWhole() async throws {
        let size = 2 << 20
        let tunnel = try await Tunnel(answerSize: size, drainGrace: .seconds(10))
        let port = tunnel.port
        let received = try await Self.onThread { try Self.request(port: port, readAfter: .milliseconds(300)) }
        #expect(received == size, "the client got \(received) of \(size) bytes")
        await tunnel.stop()
    }

    /// A client that stops reading while the upstream's answer is queued for it, after the upstream
    /// has gone: its connection is closed after the drain grace, not held open by the queue.
    @Test func aClientThatDoesNotTakeTheRestIsClosedAfterTheGrace() async throws {
        // Less than a writability high-water mark, so that the upstream's end is read at once.
        let tunnel = try await Tunnel(answerSize: 48 << 10, drainGrace: .milliseconds(300))
        let port = tunnel.port
        let reader = Task { try await Self.onThread { try Self.request(port: port, readAfter: .seconds(5)) } }
        var clients = tunnel.clients.makeAsyncIterator()
        let client = try #require(await clients.next())
        let started = ContinuousClock.now
        try await client.closeFuture.get()
        let waited = started.duration(to: .now)
        #expect(waited < .seconds(4), "the client connection stayed open \(waited) with nobody reading")
        _ = try? await reader.value
        await tunnel.stop()
    }

    /// Runs blocking socket calls on a thread of their own: blocking a thread of the cooperative
    /// pool (two on this machine) would stall every other test in the process.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Connects with a small receive buffer, sends a line, ends its output, waits `readAfter` while
    /// the answer fills the buffers, then reads 4 KiB at a time to the end; the bytes read.
    static func request(port: Int, readAfter: Duration) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(errno)") }
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestSupportError("connect: \(errno)") }
        let request = Array("the request\n".utf8)
        guard write(fd, request, request.count) == request.count else { throw TestSupportError("write: \(errno)") }
        shutdown(fd, Int32(SHUT_WR))
        usleep(useconds_t(readAfter.totalMicroseconds))
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count <= 0 { break }
            total += count
            usleep(200)
        }
        return total
    }
}
