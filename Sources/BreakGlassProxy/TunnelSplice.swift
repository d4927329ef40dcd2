import BreakGlassCore
import NIOCore
import NIOHTTP1

/// The hand-over of a client connection and an upstream connection from HTTP to a byte-for-byte
/// tunnel (an admitted CONNECT, or a WebSocket upgrade): the HTTP handlers leave both pipelines, a
/// `GlueHandler` pair joins them, and the tunnel's end is recorded once both connections are closed.
/// Both connections belong to the same event loop, and `join` runs on it.
struct TunnelSplice {
    let client: any Channel
    let upstream: any Channel
    let admission: ProxyAdmission
    /// `connect` or `websocket`, as recorded.
    let mode: String
    /// The `tunnel.closed` record has its place in the log already.
    let closeReserved: Bool

    /// Joins the two connections; the client gets `answer` (raw response head bytes) first. Bytes
    /// either side sent early are passed on, not lost. `gatewayHandler` leaves the client's pipeline
    /// once the decoders are gone.
    func join(
        answer: ByteBuffer, httpHandlers handlers: HTTPServerHandlers, gatewayHandler: GatewayChannelHandler, proxy: any PathwayAccess
    ) {
        let (client, upstream, admission, mode, closeReserved) = (client, upstream, admission, mode, closeReserved)
        let started = ContinuousClock.now
        let (clientGlue, upstreamGlue) = GlueHandler.pair()
        // Both glues go in before either decoder leaves: a departing decoder passes on the bytes that
        // followed the head, and its glue needs the partner in place to deliver them. Neither side
        // reads until both decoders are gone: bytes arriving with an end of input before that would be
        // dropped by a decoder that sees the end.
        let decodersGone: EventLoopFuture<Void>
        do {
            _ = client.setOption(.allowRemoteHalfClosure, value: true)
            _ = upstream.setOption(.allowRemoteHalfClosure, value: true)
            _ = upstream.setOption(.autoRead, value: false)
            let sync = client.pipeline.syncOperations
            _ = sync.removeHandler(handlers.encoder)
            _ = sync.removeHandler(handlers.coalescer)
            // A probe's tunnel only listens: the first byte its client sends ends it.
            if admission.session.tag == .probe { try sync.addHandler(ReadOnlyTunnelGuard()) }
            try sync.addHandler(clientGlue)
            let upstreamSync = upstream.pipeline.syncOperations
            if let encoder = try? upstreamSync.handler(type: HTTPRequestEncoder.self) { _ = upstreamSync.removeHandler(encoder) }
            if let handler = try? upstreamSync.handler(type: UpstreamHTTPHandler.self) { _ = upstreamSync.removeHandler(handler) }
            try upstreamSync.addHandler(upstreamGlue)
            client.writeAndFlush(answer, promise: nil)
            let clientDecoderGone = sync.removeHandler(handlers.decoder)
            if let decoder = try? upstreamSync.handler(type: ByteToMessageHandler<UpstreamResponseDecoder>.self) {
                decodersGone = clientDecoderGone.and(upstreamSync.removeHandler(decoder)).map { _ in }
            } else {
                decodersGone = clientDecoderGone
            }
        } catch {
            client.close(promise: nil)
            upstream.close(promise: nil)
            proxy.recordTunnelClosed(
                admission, mode: mode, bytesIn: 0, bytesOut: 0, duration: .zero, ending: "the tunnel could not start (\(error))",
                reserved: closeReserved)
            return
        }
        decodersGone.assumeIsolated().whenComplete { _ in
            // Leftovers arrive outside a read cycle, so no read-complete flushes them.
            upstream.flush()
            client.flush()
            _ = client.pipeline.syncOperations.removeHandler(gatewayHandler)
            _ = upstream.setOption(.autoRead, value: true)
            client.read()
        }
        client.closeFuture.and(upstream.closeFuture).assumeIsolated().whenComplete { _ in
            proxy.recordTunnelClosed(
                admission, mode: mode, bytesIn: clientGlue.bytesRead, bytesOut: upstreamGlue.bytesRead,
                duration: started.duration(to: .now),
                ending: proxy.sessionEnding(admission.session.session) ?? "closed", reserved: closeReserved)
        }
        // When one side closes, the glue closes the other once what is queued for it is written (or
        // after its drain grace): closing it at once would cut the end of the answer.
    }
}
