import BreakGlassCore
import NIOCore
import NIOExtras
import NIOHTTP1

/// Reads one bounded API request at a time, hands it to the router off the event loop, and writes
/// the answer back on the loop.
final class APIChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// The request was refused while its body still arrives; the rest is dropped.
        case discarding
        case responding
    }

    private let router: APIRouter
    private let limits: HTTPLimits
    private var state = State.idle

    init(router: APIRouter, limits: HTTPLimits) {
        self.router = router
        self.limits = limits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .idle):
            if let problem = headerProblem(head) {
                state = .discarding
                respond(context: context, head: head, response: .error(problem), keepAlive: false)
                return
            }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maximumBodyBytes {
                state = .discarding
                respond(context: context, head: head, response: .error(Self.tooLarge(limits)), keepAlive: false)
                return
            }
            state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
        case (.body(var chunk), .receiving(let head, var body)):
            guard body.readableBytes + chunk.readableBytes <= limits.maximumBodyBytes else {
                state = .discarding
                respond(context: context, head: head, response: .error(Self.tooLarge(limits)), keepAlive: false)
                return
            }
            body.writeBuffer(&chunk)
            state = .receiving(head, body)
        case (.end, .receiving(let head, let body)):
            state = .responding
            dispatch(context: context, head: head, body: body)
        case (.body, .discarding), (.end, .discarding):
            break
        default:
            // A part out of order: the HTTP decoder should never do this; close rather than guess.
            context.close(promise: nil)
        }
    }

    private func headerProblem(_ head: HTTPRequestHead) -> BreakGlassError? {
        guard head.headers.count <= limits.maximumHeaderCount else {
            return BreakGlassError(.headersTooLarge, "more than \(limits.maximumHeaderCount) header fields")
        }
        let bytes = head.headers.reduce(head.uri.utf8.count) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        guard bytes <= limits.maximumHeaderBytes else {
            return BreakGlassError(.headersTooLarge, "the request head is larger than \(limits.maximumHeaderBytes) bytes")
        }
        return nil
    }

    private static func tooLarge(_ limits: HTTPLimits) -> BreakGlassError {
        BreakGlassError(.payloadTooLarge, "the request body is larger than \(limits.maximumBodyBytes) bytes")
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let request = APIRequest(
            method: head.method,
            uri: head.uri,
            headers: head.headers,
            body: body,
            source: context.channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        )
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let router = self.router
        let eventLoop = context.eventLoop
        Task {
            let response = await router.route(request)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.respond(context: context, head: head, response: response, keepAlive: head.isKeepAlive)
            }
        }
    }

    /// Closes the connection on its idle timeout, unless a request is being answered.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .idle, .discarding: context.close(promise: nil)
        case .receiving, .responding: break
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, response: APIResponse, keepAlive: Bool) {
        // Back to idle before writing: the pipelining handler delivers the next request as soon as it
        // sees this response's end.
        if case .responding = state { state = .idle }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(response.body.readableBytes))
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let responseHead = HTTPResponseHead(version: head.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if !keepAlive {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
