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
    /// The client's request has been read to its end.
    private(set) var requestEnded = false
    private var responseHeadSent = false
    private var responseEnded = false
    /// Whether the upstream connection may go back to the pool after this exchange. A request with
    /// unusual framing (chunked, or a body on a method that defines none) closes it instead, so
    /// that a disagreement about where the request ends cannot outlive the exchange.
    private var upstreamReusable: Bool
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
    /// Whether this exchange holds one of its session's upstream connection claims.
    private var claimed = false

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
        self.upstreamReusable = !ProxyHeaders.hasUnusualFraming(head)
        self.upstreamURI = upstreamURI
        self.auditPath = auditPath
        self.webSocket = ProxyHeaders.isWebSocketUpgrade(head.headers)
        self.started = started
    }

    var clientWritable: Bool { clientContext.channel.isWritable }

    /// Takes request parts that arrived before the exchange existed, then connects upstream (when
    /// the session has an upstream connection to spare).
    func start(early: [HTTPServerRequestPart]) {
        for part in early { clientPart(part) }
        let pathway = admission.pathway
        guard proxy.pool.claim(session: admission.session.session, limit: pathway.proxy.maxConnectionsPerSession) else {
            fail(
                BreakGlassError(
                    .upstreamBusy,
                    "this session already uses \(pathway.proxy.maxConnectionsPerSession) upstream connections of pathway \(pathway.name) (max_connections_per_session)",
                    retryAfterSeconds: 1),
                outcome: "busy")
            return
        }
        claimed = true
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
            // Made for an exchange that ended meanwhile (its client left): closed, not pooled, where
            // it would stay open, counted against `max_connections`, until a request took it.
            channel.close(promise: nil)
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
        // The upstream's answer is due `response_timeout` after the last request byte it was given:
        // from the head on.
        extendAnswerDeadline()
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
            extendAnswerDeadline()
            if !upstream.isWritable { client.holdReads() }
        case .end(let trailers):
            upstream.writeAndFlush(HTTPClientRequestPart.end(ProxyHeaders.upstreamTrailers(trailers)), promise: nil)
            extendAnswerDeadline()
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

    /// The client's request went wrong after its head (a malformed or too slow body): the client
    /// gets `error` when no answer has begun, and the upstream connection, which may hold part of
    /// the request, is closed, never pooled.
    func clientFailed(_ error: BreakGlassError) {
        // `fail` closes the upstream connection (never reusable now) after the answer is chosen:
        // closing it first would report the upstream's close instead.
        fail(error, outcome: error.code == .requestTimeout ? "client too slow" : "bad request")
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
            if response.status == .switchingProtocols {
                // A switch nobody asked for: what follows is not HTTP, and nothing would bound it.
                fail(
                    BreakGlassError(.upstreamUnreachable, "pathway \(admission.pathway.name): the upstream switched protocols unasked"),
                    outcome: "upstream failed")
                return
            }
            if response.status.code < 200 { return }  // 100 Continue and friends: the encoder adds its own framing.
            upstreamReusable = upstreamReusable && response.isKeepAlive
            responseHeadSent = true
            client.answerStreaming()
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
        // A pooled connection the upstream had already closed: an idempotent, body-less request is
        // sent again on a new connection, once, and each attempt is on the record.
        if retryable, proxy.audit.reserve(.request) {
            proxy.recordRequest(
                admission, method: head.method, path: auditPath, status: nil, bytesIn: bytesIn, bytesOut: 0,
                upstream: nil, total: started.duration(to: .now), outcome: "retried: the pooled connection closed unanswered")
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
            finish(outcome: "upstream closed", keepClient: false)
            clientContext.close(promise: nil)
        } else {
            let why = upstreamError.map { PathwayProxy.reason($0) } ?? "closed the connection without an answer"
            fail(
                BreakGlassError(.upstreamUnreachable, "pathway \(admission.pathway.name): \(admission.pathway.upstream): \(why)"),
                outcome: upstreamError == nil ? "upstream closed" : "upstream failed")
        }
    }

    private var retryable: Bool {
        reusedConnection && !retried && !responseHeadSent && upgrade == nil && upstreamError == nil
            && Self.isIdempotent(head.method) && !ProxyHeaders.hasBody(head)
    }

    /// RFC 9110 §9.2.2: methods whose repetition has the effect of one request.
    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: true
        default: false
        }
    }

    /// The upstream must begin its answer within `response_timeout` of now (the last request byte
    /// it was given); a later deadline only moves the client connection's timer's target.
    private func extendAnswerDeadline() {
        guard !responseHeadSent else { return }
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
            // Finished first: closing the client reports its close, which would take the outcome.
            finish(outcome: outcome, keepClient: false)
            clientContext.close(promise: nil)
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
        if claimed {
            claimed = false
            proxy.pool.release(session: admission.session.session)
        }
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
        if claimed {
            // The tunnel keeps the session's claim until it closes.
            claimed = false
            let (pool, session) = (proxy.pool, admission.session.session)
            upstream.closeFuture.whenComplete { _ in pool.release(session: session) }
        }
        proxy.recordRequest(
            admission, method: head.method, path: auditPath, status: 101, bytesIn: bytesIn, bytesOut: bytesOut,
            upstream: upstreamAnswered, total: started.duration(to: .now), outcome: "upgraded")
        // A place for the WebSocket's end, as a CONNECT tunnel has from its admission; a full log
        // may still refuse that record, but it never takes the place of another.
        let closeReserved = proxy.audit.reserve(.tunnelClosed)
        client.switchToTunnel(
            upstream: upstream, answer: ProxyHeaders.switchingProtocols(response), admission: admission, mode: "websocket",
            closeReserved: closeReserved)
    }

    /// `host:port` as a Host header value.
    static func authority(_ upstream: Upstream) -> String {
        let host = upstream.host.contains(":") ? "[\(upstream.host)]" : upstream.host
        let defaultPort = upstream.scheme == .https ? 443 : 80
        return upstream.port == defaultPort ? host : "\(host):\(upstream.port)"
    }
}
