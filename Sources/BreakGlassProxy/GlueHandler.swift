import NIOCore

/// Joins two channels byte for byte: what one reads the other writes. Reads on one side wait while
/// the other side cannot take more (writability-gated), so no buffer grows without bound. A half
/// close on one side is passed on as a half close of the other; a full close closes both.
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
    /// Bytes read from this handler's channel (and written to the partner).
    public private(set) var bytesRead = 0
    private init() {}

    /// Two handlers that forward to each other; add one to each channel.
    public static func pair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
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

    /// Closes the partner's channel and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
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
        // Flushes what is queued, then half-closes; a side that cannot half-close is closed.
        context.flush()
        let channel = context.channel
        context.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        if inputClosed { channel.close(promise: nil) }
    }

    private func partnerClose() {
        context?.close(promise: nil)
    }
}
