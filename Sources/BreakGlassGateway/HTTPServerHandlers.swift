import BreakGlassProxy
import NIOCore
import NIOExtras
import NIOHTTP1

/// The HTTP/1.1 server handlers of one client connection, kept so that they can be taken out when
/// the connection becomes a tunnel (CONNECT or a WebSocket upgrade).
struct HTTPServerHandlers {
    let idle: IdleStateHandler
    let coalescer = WriteCoalescingHandler()
    let encoder = HTTPResponseEncoder()
    let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))

    init(idleTimeout: TimeAmount) {
        idle = IdleStateHandler(readTimeout: idleTimeout)
    }
}
