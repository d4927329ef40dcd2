import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A raw TLS (or plain TCP) connection for tests that need exact bytes (CONNECT, WebSocket frames, half close):
/// everything received is collected, and tests wait for what they expect.
final class TLSTestConnection: Sendable {
    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = Mutex<(bytes: [UInt8], total: Int, closed: Bool, inputClosed: Bool)>(([], 0, false, false))
        /// Bytes kept (the rest is only counted), so that a test moving megabytes stays light.
        let keep: Int

        init(keep: Int) {
            self.keep = keep
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLock {
                $0.total += buffer.readableBytes
                let room = keep - $0.bytes.count
                if room > 0 { $0.bytes += buffer.readableBytesView.prefix(room) }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            received.withLock { $0.closed = true }
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case ChannelEvent.inputClosed = event { received.withLock { $0.inputClosed = true } }
            context.fireUserInboundEventTriggered(event)
        }
    }

    private let channel: any Channel
    private let collector: Collector

    /// Without `caPath` the connection is plain TCP. `source` is the local address to connect from
    /// (another loopback address, such as 127.0.0.2, stands for another client machine).
    /// `keep`: how many received bytes are kept for `bytes` and `text` (all are counted in `received`).
    init(port: Int, caPath: String?, source: String? = nil, keep: Int = .max) async throws {
        let context: NIOSSLContext? = try caPath.map { path in
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))
            // A server that closed first sends no answer to our close_notify: do not wait 5 s for it.
            tls.shutdownTimeout = .milliseconds(200)
            return try NIOSSLContext(configuration: tls)
        }
        let collector = Collector(keep: keep)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        channel =
            try await bootstrap
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        self.collector = collector
    }

    func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Everything received so far (up to `keep` bytes).
    var bytes: [UInt8] { collector.received.withLock { $0.bytes } }
    /// How many bytes were received so far.
    var received: Int { collector.received.withLock { $0.total } }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    var isClosed: Bool { collector.received.withLock { $0.closed } }
    var inputClosed: Bool { collector.received.withLock { $0.inputClosed || $0.closed } }

    /// Waits until `condition` holds for what was received (or the timeout passes); returns whether it held.
    @discardableResult
    func wait(timeout: Duration = .seconds(10), until condition: (TLSTestConnection) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition(self)
    }

    /// Stops reading (what the peer sends waits in the buffers), until `resumeReading`.
    func pauseReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    func resumeReading() async throws {
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
    }

    /// Half-closes: sends TLS close_notify and a FIN, but keeps reading.
    func closeOutput() async throws {
        try await channel.close(mode: .output)
    }

    /// Sends `text` and closes in the same moment: the peer reads both in one go.
    func sendAndClose(_ text: String) async {
        channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
        try? await channel.close()
    }

    func close() async {
        try? await channel.close()
    }
}
