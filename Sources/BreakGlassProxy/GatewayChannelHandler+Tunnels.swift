import BreakGlassCore
import NIOCore
import NIOHTTP1

/// CONNECT tunnels and the hand-over of a connection to a tunnel (CONNECT or a WebSocket upgrade).
extension GatewayChannelHandler {
    func startTunnel(context: ChannelHandlerContext, head: HTTPRequestHead, pathway: String, proxy: any PathwayAccess) {
        authorize(
            context: context, proxy: proxy, credentials: head.headers.first(name: "proxy-authorization"), header: "Proxy-Authorization",
            pathway: pathway, kind: .tcp, request: nil
        ) { handler, context, admission, _, _ in
            handler.connectTunnel(context: context, admission: admission, proxy: proxy)
        }
    }

    private func connectTunnel(context: ChannelHandlerContext, admission: ProxyAdmission, proxy: any PathwayAccess) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        proxy.connector.tcpUpstream(admission.pathway, on: context.eventLoop).assumeIsolated().whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .failure(let error):
                proxy.audit.cancelReservation()
                handler.refuse(context: context, proxy.connector.upstreamError(error, pathway: admission.pathway))
            case .success(let upstream):
                guard handler.machine.admissionWanted(clientActive: context.channel.isActive) != nil else {
                    // The client left, or the request was answered meanwhile (a deadline).
                    proxy.audit.cancelReservation()
                    upstream.close(promise: nil)
                    return
                }
                // No byte passes before the tunnel is on the record.
                let channel = context.channel
                Task {
                    do {
                        try await proxy.recordTunnelOpened(admission, mode: "connect")
                        channel.eventLoop.execute {
                            let (handler, _) = loopBound.value
                            var answer = ByteBuffer()
                            answer.writeString("HTTP/1.1 200 Connection Established\r\n\r\n")
                            handler.switchToTunnel(
                                upstream: upstream, answer: answer, admission: admission, mode: "connect", closeReserved: true)
                        }
                    } catch {
                        upstream.close(promise: nil)
                        channel.eventLoop.execute {
                            let (handler, context) = loopBound.value
                            handler.refuse(
                                context: context,
                                BreakGlassError(
                                    .auditUnavailable, "the audit log cannot record this tunnel, so it is refused (no audit, no access)",
                                    retryAfterSeconds: 5))
                        }
                    }
                }
            }
        }
    }

    /// Replaces HTTP on both connections by a byte-for-byte glue: the client gets `answer` (raw
    /// response head bytes) first. Bytes either side sent early are passed on, not lost.
    /// `closeReserved`: the `tunnel.closed` record has its place in the log already.
    func switchToTunnel(upstream: any Channel, answer: ByteBuffer, admission: ProxyAdmission, mode: String, closeReserved: Bool) {
        guard let proxy else {
            upstream.close(promise: nil)
            return
        }
        let start = context.map { $0.channel.isActive ? machine.tunnelStarting() : .answered }
        guard let context, let start, start == .start else {
            // The client left while the tunnel was being recorded, its request was answered
            // meanwhile, or the gateway began shutting down: the tunnel's end is recorded too.
            upstream.close(promise: nil)
            let ending: String
            if let context, start == .shuttingDown {
                ending = "the gateway shut down before the tunnel started"
                respond(
                    context: context, version: .http1_1,
                    response: .error(BreakGlassError(.unavailable, "the gateway is shutting down", retryAfterSeconds: 5)),
                    keepAlive: false)
            } else if let context, context.channel.isActive {
                ending = "the request was answered before the tunnel started"
            } else {
                ending = "client closed before the tunnel started"
            }
            proxy.recordTunnelClosed(
                admission, mode: mode, bytesIn: 0, bytesOut: 0, duration: .zero, ending: ending, reserved: closeReserved)
            return
        }
        exchange = nil
        handlers.deadlines.tunnelStarted()
        TunnelSplice(client: context.channel, upstream: upstream, admission: admission, mode: mode, closeReserved: closeReserved)
            .join(answer: answer, httpHandlers: handlers, gatewayHandler: self, proxy: proxy)
    }
}
