import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Carries an open tunnel to and from two descriptors with blocking reads and writes on threads of
/// their own, for descriptors an event loop cannot watch (a regular file, `/dev/null`). The input
/// thread sends one chunk at a time and waits for its write to finish; what the tunnel sends waits
/// in a queue of at most `queueLimit` bytes, and the tunnel is not read while the queue is full. No
/// event loop ever blocks on a descriptor.
public final class BlockingStdioBridge: Sendable {
    /// Bytes read from the input descriptor at a time.
    static let chunk = 64 << 10
    /// Most bytes waiting for the output descriptor before the tunnel is read no more.
    static let queueLimit = 256 << 10

    private struct Queue {
        var buffers: [ByteBuffer] = []
        var bytes = 0
        var ended = false
        var done = false
        var failure: String?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let queue = Mutex(Queue())
    private let wakeup = NSCondition()
    private let output: Int32

    private init(output: Int32) {
        self.output = output
    }

    /// Whether an event loop (epoll) can watch `fd`: pipes, sockets and terminals can; regular
    /// files, block devices and other character devices (such as `/dev/null`) cannot.
    public static func isPollable(_ fd: Int32) -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        switch info.st_mode & S_IFMT {
        case S_IFIFO, S_IFSOCK: return true
        case S_IFCHR: return isatty(fd) == 1
        default: return false
        }
    }

    /// Joins `tunnel` (an open tunnel from `TunnelConnector.open`; call on its event loop) to `input`
    /// and `output`, which the bridge then owns. The end of `input` half-closes the tunnel.
    public static func start(tunnel: any Channel, input: Int32, output: Int32) throws -> BlockingStdioBridge {
        let bridge = BlockingStdioBridge(output: output)
        let handler = BridgeHandler(bridge: bridge)
        try tunnel.pipeline.syncOperations.addHandler(handler)
        // Bytes the gateway sent right after its answer go to the bridge as the handshake leaves.
        let handshake = try tunnel.pipeline.syncOperations.handler(type: ConnectHandshake.self)
        _ = tunnel.pipeline.syncOperations.removeHandler(handshake)
        let resume = NIOLoopBound(handler, eventLoop: tunnel.eventLoop)
        let eventLoop = tunnel.eventLoop
        Thread.detachNewThread { bridge.writeOutput(resume: { eventLoop.execute { resume.value.resume() } }) }
        Thread.detachNewThread { Self.readInput(input, into: tunnel) }
        tunnel.read()
        return bridge
    }

    /// Waits until every byte the tunnel sent is written to the output descriptor (or writing failed).
    public func finished() async {
        await withCheckedContinuation { continuation in
            let done = queue.withLock { queue in
                if !queue.done { queue.waiters.append(continuation) }
                return queue.done
            }
            if done { continuation.resume() }
        }
    }

    /// Why writing the output stopped early, or nil.
    public var failure: String? { queue.withLock { $0.failure } }

    /// Whether more may be read from the tunnel now.
    var hasRoom: Bool { queue.withLock { $0.bytes < Self.queueLimit } }

    /// Queues bytes from the tunnel; false when the queue is now full.
    func enqueue(_ buffer: ByteBuffer) -> Bool {
        let room = queue.withLock { queue in
            if !queue.done {
                queue.buffers.append(buffer)
                queue.bytes += buffer.readableBytes
            }
            return queue.bytes < Self.queueLimit
        }
        wakeup.lock()
        wakeup.signal()
        wakeup.unlock()
        return room
    }

    /// The tunnel sent its last byte.
    func end() {
        queue.withLock { $0.ended = true }
        wakeup.lock()
        wakeup.signal()
        wakeup.unlock()
    }

    private func next() -> ByteBuffer? {
        while true {
            wakeup.lock()
            let (buffer, ended) = queue.withLock { queue -> (ByteBuffer?, Bool) in
                guard !queue.buffers.isEmpty else { return (nil, queue.ended) }
                let first = queue.buffers.removeFirst()
                queue.bytes -= first.readableBytes
                return (first, false)
            }
            if buffer == nil && !ended { wakeup.wait() }
            wakeup.unlock()
            if buffer != nil || ended { return buffer }
        }
    }

    /// The output thread: writes queued bytes until the tunnel ends; `resume` lets the tunnel be
    /// read again after a full queue has room.
    private func writeOutput(resume: @escaping @Sendable () -> Void) {
        var failure: String?
        while let buffer = next() {
            let wasFull = queue.withLock { $0.bytes + buffer.readableBytes >= Self.queueLimit }
            if failure == nil { failure = Self.writeAll(buffer, to: output) }
            if wasFull { resume() }
        }
        close(output)
        let waiters = queue.withLock { queue in
            queue.done = true
            queue.failure = failure
            queue.buffers = []
            defer { queue.waiters = [] }
            return queue.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func writeAll(_ buffer: ByteBuffer, to fd: Int32) -> String? {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return "cannot write standard output: \(String(cString: strerror(errno)))"
                }
                offset += written
            }
            return nil
        }
    }

    /// The input thread: one chunk in flight at a time; the end of input half-closes the tunnel.
    private static func readInput(_ fd: Int32, into tunnel: any Channel) {
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: Self.chunk)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                // The end of input (or a failed read): no more bytes for the upstream.
                tunnel.close(mode: .output, promise: nil)
                return
            }
            // Waiting here (a thread of its own, never an event loop) is the backpressure.
            do {
                try tunnel.writeAndFlush(ByteBuffer(bytes: chunk[0..<count])).wait()
            } catch {
                return
            }
        }
    }
}

/// On the tunnel: hands what it reads to the bridge's queue, and holds reads while the queue is full.
private final class BridgeHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private let bridge: BlockingStdioBridge
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var full = false

    init(bridge: BlockingStdioBridge) {
        self.bridge = bridge
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        bridge.end()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !bridge.enqueue(unwrapInboundIn(data)) { full = true }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { bridge.end() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        bridge.end()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if full && !bridge.hasRoom {
            pendingRead = true
        } else {
            full = false
            context.read()
        }
    }

    /// The output thread made room: a held read goes ahead.
    func resume() {
        guard pendingRead, let context, bridge.hasRoom else { return }
        pendingRead = false
        full = false
        context.read()
    }
}
