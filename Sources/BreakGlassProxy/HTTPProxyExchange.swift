import BreakGlassCore
import NIOCore
import NIOHTTP1

/// One proxied HTTP request, from the client's head to the upstream's last byte. It lives on the
/// client connection's event loop (the upstream connection is made on the same loop), streams
/// both ways with backpressure, and is audited once when it finishes. Every decision is its
/// `ProxyExchangeStateMachine`'s; this class performs the actions and keeps the I/O.
final class HTTPProxyExchange {
    private let client: GatewayChannelHandler
    private let clientContext: ChannelHandlerContext
    private let proxy: any PathwayAccess
    let admission: ProxyAdmission
    private let upstreamURI: String
    private let auditPath: String
    private let started: ContinuousClock.Instant
    private var machine: ProxyExchangeStateMachine

    private var upstream: (any Channel)?
    private var handler: UpstreamHTTPHandler?
    private var upstreamStarted: ContinuousClock.Instant?
    private var upstreamAnswered: Duration?

    init(
        client: GatewayChannelHandler,
        context: ChannelHandlerContext,
        proxy: any PathwayAccess,
        admission: ProxyAdmission,
        head: HTTPRequestHead,
        upstreamURI: String,
        auditPath: String,
        started: ContinuousClock.Instant
    ) {
        self.client = client
        self.clientContext = context
        self.proxy = proxy
        self.admission = admission
        self.upstreamURI = upstreamURI
        self.auditPath = auditPath
        self.started = started
        let pathway = admission.pathway
        self.machine = ProxyExchangeStateMachine(
            request: .init(
                head: head, pathway: pathway.name, upstream: pathway.upstream,
                maxConnectionsPerSession: pathway.proxy.maxConnectionsPerSession, responseTimeout: pathway.proxy.responseTimeout)
        )
    }

    private var head: HTTPRequestHead { machine.request.head }

    var clientWritable: Bool { clientContext.channel.isWritable }

    /// Takes request parts that arrived before the exchange existed, then connects upstream (when
    /// the session has an upstream connection to spare).
    func start(early: [HTTPServerRequestPart]) {
        for part in early { perform(machine.clientPart(part)) }
        let claimed = proxy.connector.pool.claim(
            session: admission.session.session, limit: admission.pathway.proxy.maxConnectionsPerSession)
        perform(machine.start(claimed: claimed))
    }

    private func perform(_ action: ProxyExchangeStateMachine.Action) {
        switch action {
        case .none:
            break
        case .connect(let fresh):
            connect(fresh: fresh)
        case .discardConnection:
            break  // `connected` closes it
        case .closedOnArrival:
            upstreamClosed()
        case .sendRequest(let waiting, let answerContinue):
            sendRequest(waiting: waiting, answerContinue: answerContinue)
        case .forward(let part, let extendDeadline):
            forward(part, extendDeadline: extendDeadline)
        case .answerBegan:
            client.answerBegan()
        case .answerHead(let response):
            client.answerBegan()
            client.answerStreaming()
            clientContext.write(
                client.wrapOutboundOut(.head(ProxyHeaders.clientResponse(response, keepAlive: head.isKeepAlive))), promise: nil)
        case .answerBody(let buffer):
            clientContext.write(client.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .answerEnd(let trailers, let finish):
            // The end's completion is needed only when the client connection closes after it (a
            // promise also costs an empty write down the pipeline).
            if finish.keepClient, !client.closesAfterAnswer {
                clientContext.writeAndFlush(client.wrapOutboundOut(.end(trailers)), promise: nil)
                end(finish, written: nil)
            } else {
                end(finish, written: clientContext.writeAndFlush(client.wrapOutboundOut(.end(trailers))))
            }
        case .retry:
            client.answerBegan()
            handler?.exchange = nil
            handler = nil
            upstream = nil
            connect(fresh: true)
        case .upgrade(let response, let holdsClaim):
            upgrade(response, holdsClaim: holdsClaim)
        case .finish(let finish):
            end(finish, written: nil)
        }
    }

    private func connect(fresh: Bool) {
        upstreamStarted = .now
        // A kept-alive connection from the pool is taken at once, without a future (and without a
        // copy of the pathway).
        if !fresh,
            let idle = proxy.connector.pool.takeIdle(
                pathway: admission.pathway.name, destination: admission.poolDestination, on: clientContext.eventLoop)
        {
            connected(idle)
            return
        }
        let pathway = admission.pathway
        proxy.connector.httpUpstream(pathway, forUpgrade: machine.webSocket, on: clientContext.eventLoop).assumeIsolated().whenComplete {
            result in
            switch result {
            case .success(let channel): self.connected(channel)
            case .failure(let error): self.perform(self.machine.connectFailed(self.proxy.connector.upstreamError(error, pathway: pathway)))
            }
        }
    }

    private func connected(_ channel: any Channel) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHTTPHandler.self) else {
            channel.close(promise: nil)
            perform(
                machine.connectFailed(
                    BreakGlassError(.upstreamUnreachable, "pathway \(admission.pathway.name): the upstream connection is unusable")))
            return
        }
        let action = machine.connected(reused: handler.served > 0, active: channel.isActive)
        if case .discardConnection = action {
            // Made for an exchange that ended meanwhile (its client left): closed, not pooled, where
            // it would stay open, counted against `max_connections`, until a request took it.
            channel.close(promise: nil)
            return
        }
        upstream = channel
        self.handler = handler
        handler.exchange = self
        handler.served += 1
        perform(action)
    }

    private func sendRequest(waiting: [HTTPServerRequestPart], answerContinue: Bool) {
        guard let upstream else { return }
        let requestHead = ProxyHeaders.upstreamRequest(
            head,
            uri: upstreamURI,
            host: admission.upstreamHost,
            identity: admission.identity,
            webSocket: machine.webSocket
        )
        upstream.write(HTTPClientRequestPart.head(requestHead), promise: nil)
        // The upstream's answer is due `response_timeout` after the last request byte it was given:
        // from the head on.
        awaitAnswer()
        if answerContinue {
            clientContext.writeAndFlush(
                client.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        for part in waiting { forward(part, extendDeadline: machine.extendDeadline()) }
        upstream.flush()
        // A flush that fails closes the connection at once, which may have ended the exchange.
        if upstream.isWritable, machine.state != .finished { client.releaseReads() }
    }

    private func forward(_ part: HTTPServerRequestPart, extendDeadline: Bool) {
        guard let upstream else { return }
        switch part {
        case .head:
            return
        case .body(let buffer):
            upstream.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
            if !upstream.isWritable { client.holdReads() }
        case .end(let trailers):
            upstream.writeAndFlush(HTTPClientRequestPart.end(ProxyHeaders.upstreamTrailers(trailers)), promise: nil)
        }
        // (A write that failed may have ended the exchange meanwhile: then no deadline is due.)
        if extendDeadline, machine.state != .finished { awaitAnswer() }
    }

    /// The upstream must begin its answer within `response_timeout` of now (the last request byte
    /// it was given); a later deadline only moves the client connection's timer's target.
    private func awaitAnswer() {
        client.awaitAnswer(by: .now() + TimeAmount(admission.pathway.proxy.responseTimeout))
    }

    // MARK: from the client

    /// A request part from the client.
    func clientPart(_ part: HTTPServerRequestPart) {
        perform(machine.clientPart(part))
    }

    func clientReadComplete() {
        upstream?.flush()
    }

    func clientClosed() {
        perform(machine.clientClosed())
    }

    /// The client's request went wrong after its head (a malformed or too slow body).
    func clientFailed(_ error: BreakGlassError) {
        perform(machine.clientFailed(error))
    }

    func clientBecameWritable() {
        handler?.resumeReading()
    }

    // MARK: from the upstream

    func upstreamRead(_ part: HTTPClientResponsePart) {
        if case .head = part { upstreamAnswered = upstreamStarted.map { $0.duration(to: .now) } }
        perform(machine.upstreamRead(part))
    }

    func upstreamReadComplete() {
        clientContext.flush()
    }

    func upstreamBecameWritable() {
        client.releaseReads()
    }

    func upstreamFailed(_ error: any Error) {
        machine.upstreamFailed(reason: UpstreamConnector.reason(error))
    }

    func upstreamClosed() {
        // A pooled connection the upstream had already closed: an idempotent, body-less request is
        // sent again on a new connection, once, and each attempt is on the record.
        if machine.mayRetry, proxy.audit.reserve(.request) {
            proxy.recordRequest(
                admission, method: head.method, path: auditPath, status: nil, bytesIn: machine.bytesIn, bytesOut: 0,
                upstream: nil, total: started.duration(to: .now), outcome: "retried: the pooled connection closed unanswered")
            perform(machine.retrying())
            return
        }
        perform(machine.upstreamClosed())
    }

    /// The upstream did not begin its answer within the pathway's `response_timeout`.
    func answerTimedOut() {
        perform(machine.answerTimedOut())
    }

    // MARK: ending

    /// Ends the exchange as `finish` says; `written` completes when the last answer byte is out
    /// (the client connection may be closed then).
    private func end(_ finish: ProxyExchangeStateMachine.Finish, written: EventLoopFuture<Void>?) {
        client.answerBegan()
        // Detached before its connection is closed or pooled: a close it reports now is nobody's.
        handler?.exchange = nil
        if finish.releaseClaim { proxy.connector.pool.release(session: admission.session.session) }
        if let upstream {
            let (pool, pathway, destination) = (proxy.connector.pool, admission.pathway.name, admission.poolDestination)
            if finish.poolConnection, let handler {
                handler.recycle { reusable in pool.checkin(upstream, pathway: pathway, destination: destination, reusable: reusable) }
            } else {
                pool.checkin(upstream, pathway: pathway, destination: destination, reusable: false)
            }
        }
        proxy.recordRequest(
            admission, method: head.method, path: auditPath, status: finish.status, bytesIn: machine.bytesIn, bytesOut: machine.bytesOut,
            upstream: upstreamAnswered, total: started.duration(to: .now), outcome: finish.outcome)
        client.exchangeFinished(keepAlive: finish.keepClient, answer: finish.answer, written: written)
        // The answer began already: the client connection is cut (finished first, so that its
        // close is not taken for the outcome).
        if finish.closeClient { clientContext.close(promise: nil) }
    }

    private func upgrade(_ response: HTTPResponseHead, holdsClaim: Bool) {
        guard let upstream else { return }
        client.answerBegan()
        handler?.exchange = nil
        if holdsClaim {
            // The tunnel keeps the session's claim until it closes.
            let (pool, session) = (proxy.connector.pool, admission.session.session)
            upstream.closeFuture.whenComplete { _ in pool.release(session: session) }
        }
        proxy.recordRequest(
            admission, method: head.method, path: auditPath, status: 101, bytesIn: machine.bytesIn, bytesOut: machine.bytesOut,
            upstream: upstreamAnswered, total: started.duration(to: .now), outcome: "upgraded")
        // A place for the WebSocket's end, as a CONNECT tunnel has from its admission; a full log
        // may still refuse that record, but it never takes the place of another.
        let closeReserved = proxy.audit.reserve(.tunnelClosed)
        client.switchToTunnel(
            upstream: upstream, answer: ProxyHeaders.switchingProtocols(response), admission: admission, mode: "websocket",
            closeReserved: closeReserved)
    }
}
