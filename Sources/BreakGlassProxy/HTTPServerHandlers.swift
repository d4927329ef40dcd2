import BreakGlassCore
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 server handlers of one client connection, kept so that they can be taken out when
/// the connection becomes a tunnel (CONNECT or a WebSocket upgrade). The deadline handler stays:
/// it keeps the tunnel's idle deadline.
package struct HTTPServerHandlers {
    package let deadlines: ClientDeadlineHandler
    package let coalescer = WriteCoalescingHandler()
    package let encoder = HTTPResponseEncoder()
    /// Bytes waiting to be decoded are bounded: a head never grows past this (far above the
    /// header limits), and bodies are passed on as they come.
    package let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes), maximumBufferSize: 256 << 10)

    package init(limits: GatewayLimits) {
        deadlines = ClientDeadlineHandler(settings: Self.settings(limits))
    }

    package static func settings(_ limits: GatewayLimits) -> ClientDeadlines.Settings {
        ClientDeadlines.Settings(
            headTimeout: TimeAmount(limits.headTimeout),
            idleTimeout: TimeAmount(limits.idleTimeout),
            bodyMinRate: limits.bodyMinRate,
            bodyGrace: TimeAmount(limits.bodyGrace),
            tunnelIdleTimeout: TimeAmount(limits.tunnelIdleTimeout)
        )
    }
}
