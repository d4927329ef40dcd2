import NIOCore

/// Joins two channels byte for byte: what one reads the other writes. Reads on one side wait while
/// the other side cannot take more (writability-gated), so no buffer grows without bound. A half
/// close on one side is passed on as a half close of the other; a full close closes the other
/// once what it has queued is written; an error closes both at once.
///
/// Both channels must belong to the same event loop.
public final class GlueHandler: ChannelDuplexHandler {
    /// Bytes read from this handler's channel.
    public typealias InboundIn = ByteBuffer
    /// Bytes written to this handler's channel by other handlers.
    public typealias OutboundIn = ByteBuffer
    /// Bytes the partner read, written to this handler's channel.
    public typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    /// This channel closes once its queue is written.
    private var closing = false
    /// How long a side whose partner has gone may take to accept what is queued for it (at most
    /// about one writability high-water mark) before it is closed anyway.
    private let drainGrace: TimeAmount
    /// Bytes read from this handler's channel (and written to the partner).
    public private(set) var bytesRead = 0

    private init(drainGrace: TimeAmount) {
        self.drainGrace = drainGrace
    }

    /// Two handlers that forward to each other; add one to each channel. When one channel closes,
    /// the other closes once what is queued for it is written, or after `drainGrace`.
    public static func pair(drainGrace: TimeAmount = .seconds(10)) -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(drainGrace: drainGrace)
        let second = GlueHandler(drainGrace: drainGrace)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    /// Keeps the context, through which the partner writes.
    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Forgets the context and the partner.
    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    // MARK: this side's events

    /// Counts the bytes and has the partner write them.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesRead += buffer.readableBytes
        partner?.partnerWrite(buffer)
    }

    /// Flushes the partner's channel.
    public func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    /// Closes the partner's channel once what it has queued is written, and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerCloseWhenWritten()
        context.fireChannelInactive()
    }

    /// On a half close of this side's input, half-closes the partner's output; passes every event on.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            partner?.partnerCloseOutput()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closes both channels.
    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerClose()
        context.close(promise: nil)
    }

    /// When this channel can take more again, the partner's held read goes ahead; passes the event on.
    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    /// Reads while the partner's channel can take more; otherwise holds the read until it can.
    public func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }

    // MARK: called by the partner

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerBecameWritable() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    private func partnerCloseOutput() {
        guard let context else { return }
        let channel = context.channel
        guard !inputClosed else {
            // Both directions have ended. (NIO turns a half close of a channel whose input ended
            // into a full close, which would drop what is queued.)
            partnerCloseWhenWritten()
            return
        }
        // Half-closes once what is queued is written; a side that cannot half-close is closed.
        context.flush()
        context.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
    }

    /// The partner's channel is gone: this one closes after what it has queued is written (an
    /// empty write completes after every write before it), or after `drainGrace` when its peer
    /// does not take it.
    private func partnerCloseWhenWritten() {
        guard let context, !closing else { return }
        closing = true
        let channel = context.channel
        let grace = context.eventLoop.scheduleTask(in: drainGrace) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            grace.cancel()
            channel.close(promise: nil)
        }
    }

    private func partnerClose() {
        context?.close(promise: nil)
    }
}
