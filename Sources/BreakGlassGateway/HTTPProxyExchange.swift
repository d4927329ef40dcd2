import BreakGlassCore
import BreakGlassProxy
import NIOCore
import NIOHTTP1

/// One proxied HTTP request, from the client's head to the upstream's last byte. It lives on the
/// client connection's event loop (the upstream connection is made on the same loop), streams
/// both ways with backpressure, and is audited once when it finishes.
final class HTTPProxyExchange {
    private let client: GatewayChannelHandler
    private let clientContext: ChannelHandlerContext
    private let proxy: PathwayProxy
    let admission: PathwayProxy.Admission
    private let head: HTTPRequestHead
    private let upstreamURI: String
    private let auditPath: String
    private let webSocket: Bool
    private let started: ContinuousClock.Instant

    private var upstream: (any Channel)?
    private var handler: UpstreamHTTPHandler?
    /// Request parts that arrived before the upstream connection was ready (reads are held
    /// meanwhile, so at most what one read delivered).
    private var buffered: [HTTPServerRequestPart] = []
    private var requestEnded = false
    private var responseHeadSent = false
    private var responseEnded = false
    private var upstreamReusable = true
    private var status: Int?
    private var bytesIn = 0
    private var bytesOut = 0
    private var upstreamStarted: ContinuousClock.Instant?
    private var upstreamAnswered: Duration?
    /// The upstream's answer is awaited (the client connection's timer holds its deadline).
    private var awaitingAnswer = false
    private var finished = false
    /// A `101` answer to a WebSocket upgrade, switched to a tunnel once the decoder has ended it.
    private var upgrade: HTTPResponseHead?
    /// The first error the upstream connection reported (a failed TLS handshake, say).
    private var upstreamError: (any Error)?
    /// Whether the connection came from the pool, and whether the request was sent again on a new one.
    private var reusedConnection = false
    private var retried = false

    init(
        client: GatewayChannelHandler,
        context: ChannelHandlerContext,
        proxy: PathwayProxy,
        admission: PathwayProxy.Admission,
        head: HTTPRequestHead,
        upstreamURI: String,
        auditPath: String,
        started: ContinuousClock.Instant
    ) {
        self.client = client
        self.clientContext = context
        self.proxy = proxy
        self.admission = admission
        self.head = head
        self.upstreamURI = upstreamURI
        self.auditPath = auditPath
        self.webSocket = ProxyHeaders.isWebSocketUpgrade(head.headers)
        self.started = started
    }

    var clientWritable: Bool { clientContext.channel.isWritable }

    /// Takes request parts that arrived before the exchange existed, then connects upstream.
    func start(early: [HTTPServerRequestPart]) {
        for part in early { clientPart(part) }
        connect(fresh: webSocket)
    }

    private func connect(fresh: Bool) {
        let pathway = admission.pathway
        upstreamStarted = .now
        // A kept-alive connection from the pool is taken at once, without a future; `fresh` wants a
        // new one, as for an upgrade, which many servers accept only as a connection's first request.
        if !fresh,
            let idle = proxy.pool.takeIdle(pathway: pathway.name, destination: admission.poolDestination, on: clientContext.eventLoop)
        {
            connected(idle)
            return
        }
        proxy.httpUpstream(pathway, on: clientContext.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel): self.connected(channel)
            case .failure(let error): self.fail(self.proxy.upstreamError(error, pathway: pathway), outcome: "connect failed")
            }
        }
    }

    private func connected(_ channel: any Channel) {
        guard !finished else {
            proxy.pool.checkin(channel, pathway: admission.pathway.name, destination: admission.poolDestination, reusable: true)
            return
        }
        guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHTTPHandler.self) else {
            channel.close(promise: nil)
            fail(
                BreakGlassError(.upstreamUnreachable, "pathway \(admission.pathway.name): the upstream connection is unusable"),
                outcome: "connect failed")
            return
        }
        upstream = channel
        self.handler = handler
        handler.exchange = self
        handler.served += 1
        reusedConnection = handler.served > 1
        guard channel.isActive else {
            // Closed between the pool and here: its close was reported to nobody.
            upstreamClosed()
            return
        }
        let requestHead = ProxyHeaders.upstreamRequest(
            head,
            uri: upstreamURI,
            host: admission.upstreamHost,
            identity: admission.identity,
            webSocket: webSocket
        )
        channel.write(HTTPClientRequestPart.head(requestHead), promise: nil)
        // The gateway answers `Expect: 100-continue` itself once the upstream is there (the upstream
        // does not see the header, and the decoder drops informational answers).
        if ProxyHeaders.expectsContinue(head.headers), !requestEnded {
            clientContext.writeAndFlush(
                client.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        let early = buffered
        buffered = []
        for part in early { forward(part) }
        channel.flush()
        if channel.isWritable { client.releaseReads() }
    }

    // MARK: from the client

    /// A request part from the client.
    func clientPart(_ part: HTTPServerRequestPart) {
        switch part {
        case .head:
            break
        case .body(let buffer):
            bytesIn += buffer.readableBytes
        case .end:
            requestEnded = true
        }
        guard upstream != nil else {
            buffered.append(part)
            return
        }
        forward(part)
    }

    private func forward(_ part: HTTPServerRequestPart) {
        guard let upstream else { return }
        switch part {
        case .head:
            break
        case .body(let buffer):
            upstream.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
            if !upstream.isWritable { client.holdReads() }
        case .end(let trailers):
            upstream.writeAndFlush(HTTPClientRequestPart.end(trailers), promise: nil)
            armResponseTimer()
            if responseEnded { finish(outcome: "ok") }
        }
    }

    func clientReadComplete() {
        upstream?.flush()
    }

    func clientClosed() {
        upstream?.close(promise: nil)
        finish(outcome: responseEnded ? "ok" : "client closed")
    }

    func clientBecameWritable() {
        handler?.resumeReading()
    }

    // MARK: from the upstream

    func upstreamRead(_ part: HTTPClientResponsePart) {
        guard !finished else { return }
        switch part {
        case .head(let response):
            stopAwaitingAnswer()
            upstreamAnswered = upstreamStarted.map { $0.duration(to: .now) }
            status = Int(response.status.code)
            if webSocket, response.status == .switchingProtocols {
                upgrade = response
                return
            }
            if response.status.code < 200 { return }  // 100 Continue and friends: the encoder adds its own framing.
            upstreamReusable = upstreamReusable && response.isKeepAlive
            responseHeadSent = true
            clientContext.write(
                client.wrapOutboundOut(.head(ProxyHeaders.clientResponse(response, keepAlive: head.isKeepAlive))), promise: nil)
        case .body(let buffer):
            bytesOut += buffer.readableBytes
            clientContext.write(client.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end(let trailers):
            if let upgrade, let upstream {
                // The decoder stops after this part; bytes after it reach the tunnel when it is removed.
                finishAsUpgrade(upgrade, upstream: upstream)
                return
            }
            responseEnded = true
            // The end's completion is needed only when the client connection closes after it (a
            // promise also costs an empty write down the pipeline).
            let written: EventLoopFuture<Void>?
            if requestEnded, head.isKeepAlive, !client.closesAfterAnswer {
                clientContext.writeAndFlush(client.wrapOutboundOut(.end(trailers)), promise: nil)
                written = nil
            } else {
                written = clientContext.writeAndFlush(client.wrapOutboundOut(.end(trailers)))
            }
            if requestEnded {
                finish(outcome: "ok", written: written)
            } else {
                // The upstream answered before the request body ended: this connection cannot go on.
                upstreamReusable = false
                finish(outcome: "ok", keepClient: false, written: written)
            }
        }
    }

    func upstreamReadComplete() {
        clientContext.flush()
    }

    func upstreamBecameWritable() {
        client.releaseReads()
    }

    func upstreamFailed(_ error: any Error) {
        if upstreamError == nil { upstreamError = error }
    }

    func upstreamClosed() {
        guard !finished, !responseEnded else { return }
        if retryable {
            // A pooled connection the upstream had already closed: send the (body-less) request again
            // on a new connection, once.
            retried = true
            stopAwaitingAnswer()
            handler?.exchange = nil
            handler = nil
            upstream = nil
            buffered = requestEnded ? [.end(nil)] : []
            connect(fresh: true)
            return
        }
        upstreamReusable = false
        if responseHeadSent {
            clientContext.close(promise: nil)
            finish(outcome: "upstream closed", keepClient: false)
        } else {
            let why = upstreamError.map { PathwayProxy.reason($0) } ?? "closed the connection without an answer"
            fail(
                BreakGlassError(.upstreamUnreachable, "pathway \(admission.pathway.name): \(admission.pathway.upstream): \(why)"),
                outcome: upstreamError == nil ? "upstream closed" : "upstream failed")
        }
    }

    private var retryable: Bool {
        reusedConnection && !retried && !responseHeadSent && upgrade == nil && upstreamError == nil
            && !GatewayChannelHandler.hasBody(head)
    }

    private func armResponseTimer() {
        guard !awaitingAnswer, !responseHeadSent else { return }
        awaitingAnswer = true
        client.awaitAnswer(by: .now() + PathwayProxy.timeAmount(admission.pathway.proxy.responseTimeout))
    }

    private func stopAwaitingAnswer() {
        guard awaitingAnswer else { return }
        awaitingAnswer = false
        client.answerBegan()
    }

    /// The upstream did not begin its answer within the pathway's `response_timeout`.
    func answerTimedOut() {
        guard awaitingAnswer, !finished, !responseHeadSent else { return }
        awaitingAnswer = false
        // `fail` detaches from the upstream connection first and then closes it.
        fail(
            BreakGlassError(
                .upstreamTimeout,
                "pathway \(admission.pathway.name): \(admission.pathway.upstream) did not answer within \(admission.pathway.proxy.responseTimeout.policyText)"
            ),
            outcome: "timeout")
    }

    // MARK: ending

    /// Answers the client with an error (when nothing was sent yet) and ends the exchange.
    private func fail(_ error: BreakGlassError, outcome: String) {
        guard !finished else { return }
        upstreamReusable = false
        status = error.code.httpStatus
        if !responseHeadSent {
            finish(outcome: outcome, keepClient: false, answer: error)
        } else {
            clientContext.close(promise: nil)
            finish(outcome: outcome, keepClient: false)
        }
    }

    /// `written` completes when the last response byte is out (the client connection may be closed then).
    private func finish(
        outcome: String, keepClient: Bool = true, answer: BreakGlassError? = nil, written: EventLoopFuture<Void>? = nil
    ) {
        guard !finished else { return }
        finished = true
        stopAwaitingAnswer()
        handler?.exchange = nil
        if let upstream {
            proxy.pool.checkin(
                upstream, pathway: admission.pathway.name, destination: admission.poolDestination,
                reusable: upstreamReusable && requestEnded && responseEnded)
        }
        proxy.recordRequest(
            admission, method: head.method, path: auditPath, status: status, bytesIn: bytesIn, bytesOut: bytesOut,
            upstream: upstreamAnswered, total: started.duration(to: .now), outcome: outcome)
        client.exchangeFinished(keepAlive: keepClient && head.isKeepAlive, answer: answer, written: written)
    }

    private func finishAsUpgrade(_ response: HTTPResponseHead, upstream: any Channel) {
        finished = true
        stopAwaitingAnswer()
        handler?.exchange = nil
        proxy.recordRequest(
            admission, method: head.method, path: auditPath, status: 101, bytesIn: bytesIn, bytesOut: bytesOut,
            upstream: upstreamAnswered, total: started.duration(to: .now), outcome: "upgraded")
        client.switchToTunnel(
            upstream: upstream, answer: ProxyHeaders.switchingProtocols(response), admission: admission, mode: "websocket")
    }

    /// `host:port` as a Host header value.
    static func authority(_ upstream: Upstream) -> String {
        let host = upstream.host.contains(":") ? "[\(upstream.host)]" : upstream.host
        let defaultPort = upstream.scheme == .https ? 443 : 80
        return upstream.port == defaultPort ? host : "\(host):\(upstream.port)"
    }
}
