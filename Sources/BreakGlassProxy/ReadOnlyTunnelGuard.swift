import NIOCore

/// Sits before a probe tunnel's glue on the client side: the upstream's bytes reach the probe, and
/// the first byte the probe sends closes the tunnel instead of reaching the upstream.
final class ReadOnlyTunnelGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if unwrapInboundIn(data).readableBytes > 0 { context.close(promise: nil) }
    }
}
