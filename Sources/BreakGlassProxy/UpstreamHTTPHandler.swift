import NIOCore
import NIOHTTP1

/// The end of an upstream HTTP connection: hands response parts to the exchange it serves, and
/// reads only while the client can take more.
final class UpstreamHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange using this connection; nil while the connection is idle in the pool.
    var exchange: HTTPProxyExchange?
    /// How many exchanges this connection has carried (more than one: it came from the pool).
    var served = 0
    private let decoder: UpstreamResponseDecoder
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// The connection said something out of turn or failed: it never goes back to the pool.
    private var spoiled = false

    /// A handler after `decoder`'s `ByteToMessageHandler`.
    init(decoder: UpstreamResponseDecoder) {
        self.decoder = decoder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else {
            // An idle connection must not speak; whatever it says cannot belong to anyone.
            spoiled = true
            context.close(promise: nil)
            return
        }
        let part = unwrapInboundIn(data)
        decoder.delivered(part)
        exchange.upstreamRead(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        spoiled = true
        exchange?.upstreamFailed(error)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let exchange, !exchange.clientWritable {
            pendingRead = true
        } else {
            context.read()
        }
    }

    /// Readies the connection for another exchange after a complete one, then calls `done` with
    /// whether it may be pooled: the answer decoder is readied for a new answer, with a new parser
    /// unless the last one provably read nothing after the answer (`UpstreamResponseDecoder.renew`).
    func recycle(_ done: @escaping (_ reusable: Bool) -> Void) {
        exchange = nil
        guard !spoiled, let context, context.channel.isActive else { return done(false) }
        decoder.renew(done)
    }

    /// The client can take more again.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}
