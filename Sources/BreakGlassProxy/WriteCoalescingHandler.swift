import NIOCore

/// Joins the small writes between two flushes into one buffer, so that TLS seals one record for a
/// small answer (its head and body) rather than one per write. Larger writes pass as they are,
/// after whatever was joined before them.
public final class WriteCoalescingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    /// Writes as the pipeline makes them.
    public typealias OutboundIn = IOData
    /// Writes as they go to TLS, small buffers joined.
    public typealias OutboundOut = IOData

    /// The most bytes joined into one write.
    public static let limit = 16 * 1024

    private var joined: ByteBuffer?
    private var promise: EventLoopPromise<Void>?

    /// A handler that holds nothing yet.
    public init() {}

    /// Joins a small buffer to what is held; any other write goes out after what is held.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .byteBuffer(var buffer) = unwrapOutboundIn(data),
            (joined?.readableBytes ?? 0) + buffer.readableBytes <= Self.limit
        else {
            writeJoined(context: context)
            context.write(data, promise: promise)
            return
        }
        if joined == nil {
            joined = buffer
        } else {
            joined?.writeBuffer(&buffer)
        }
        if let promise {
            if let earlier = self.promise {
                earlier.futureResult.cascade(to: promise)
            } else {
                self.promise = promise
            }
        }
    }

    /// Writes what is held, then flushes.
    public func flush(context: ChannelHandlerContext) {
        writeJoined(context: context)
        context.flush()
    }

    /// Leaves the pipeline (a connection turning into a tunnel) after passing on what it holds.
    public func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        writeJoined(context: context)
        context.leavePipeline(removalToken: removalToken)
    }

    /// Drops what is still held and fails its writes' promises.
    public func handlerRemoved(context: ChannelHandlerContext) {
        // Removed with the channel: nothing will be written any more.
        promise?.fail(ChannelError.ioOnClosedChannel)
        promise = nil
        joined = nil
    }

    private func writeJoined(context: ChannelHandlerContext) {
        guard let buffer = joined else { return }
        let promise = self.promise
        joined = nil
        self.promise = nil
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
    }
}
