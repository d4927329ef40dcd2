import BreakGlassCore
import NIOCore
import NIOHTTP1

/// One client connection: API requests (bounded, answered by the router off the event loop),
/// proxied HTTP requests to `/p/PATHWAY/...` (streamed), and `CONNECT PATHWAY:PORT` tunnels.
///
/// Requests are served one at a time, in order. A request that arrives while another is being
/// answered (HTTP/1.1 pipelining) waits here, and reading stops until it is taken; a connection
/// that sends one request at a time keeps reading throughout (no poller change per request).
package final class GatewayChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPServerRequestPart
    package typealias OutboundIn = HTTPServerResponsePart
    package typealias OutboundOut = HTTPServerResponsePart

    // Members are internal, not private, where the tunnels (`GatewayChannelHandler+Tunnels`) use them.
    private let route: @Sendable (APIRequest) async -> APIResponse
    /// The data path; nil on a listener that serves only an API (the admin socket).
    let proxy: (any PathwayAccess)?
    let handlers: HTTPServerHandlers
    /// Which request is answered, what waits, whether reads flow: every decision is the machine's;
    /// this handler performs its actions.
    var machine: ConnectionStateMachine
    var context: ChannelHandlerContext?
    /// The exchange of the proxied request in progress (while the machine is `.proxying`).
    var exchange: HTTPProxyExchange?
    /// The last credentials (header value) verified on this connection, so that keep-alive requests
    /// skip the signature check.
    private var verified: (credentials: String, admission: ProxyAdmission)?
    /// The timer of the answer deadline (the machine says when to arm it).
    private var answerTimer: Scheduled<Void>?

    /// The connection closes once the request in progress is answered.
    var closesAfterAnswer: Bool { machine.closesAfterAnswer }

    package init(
        route: @escaping @Sendable (APIRequest) async -> APIResponse, proxy: (any PathwayAccess)?, limits: HTTPLimits,
        handlers: HTTPServerHandlers
    ) {
        self.route = route
        self.proxy = proxy
        self.handlers = handlers
        self.machine = ConnectionStateMachine(limits: limits, servesPathways: proxy != nil)
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        answerTimer?.cancel()
        answerTimer = nil
        machine.timerCancelled()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if machine.isTunneling {
            // Bytes the client sent right after CONNECT or the upgrade, passed on by the departing decoder.
            context.fireChannelRead(data)
            return
        }
        let part = unwrapInboundIn(data)
        // The client's deadlines follow the decoder: a head or end counts when it arrives, even
        // when its request waits its turn.
        switch part {
        case .head: handlers.deadlines.headReceived()
        case .end: handlers.deadlines.requestEnded()
        case .body: break
        }
        perform(machine.received(part), context: context)
    }

    private func perform(_ action: ConnectionStateMachine.PartAction, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .close:
            // A part out of order: the HTTP decoder should never do this; close rather than guess.
            context.close(promise: nil)
        case .begin(let start):
            handlers.deadlines.answerStarted()
            switch start {
            case .refuse(let version, let error):
                respond(context: context, version: version, response: .error(error), keepAlive: false)
            case .tunnel(let head, let pathway):
                if let proxy { startTunnel(context: context, head: head, pathway: pathway, proxy: proxy) }
            case .proxy(let head, let target):
                if let proxy { startProxy(context: context, head: head, target: target, proxy: proxy) }
            case .collectBody:
                break
            }
        case .refuse(let version, let error):
            respond(context: context, version: version, response: .error(error), keepAlive: false)
        case .dispatch(let head, let body):
            dispatch(context: context, head: head, body: body)
        case .forward(let part):
            exchange?.clientPart(part)
        case .drained:
            handlers.deadlines.answerFinished()
            becameIdle(context: context)
        }
    }

    private func perform(
        _ action: ConnectionStateMachine.FailureAction, problem: BreakGlassError, context: ChannelHandlerContext
    ) {
        switch action {
        case .none:
            break
        case .close:
            context.close(promise: nil)
        case .answer:
            respond(context: context, version: .http1_1, response: .error(problem), keepAlive: false)
        case .failExchange:
            exchange?.clientFailed(problem)
        }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if machine.isProxying { exchange?.clientReadComplete() }
        context.fireChannelReadComplete()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        if machine.clientClosed() { exchange?.clientClosed() }
        context.fireChannelInactive()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, machine.isProxying { exchange?.clientBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    /// Answers a request whose head or body came too slowly with `408` when no answer is under way
    /// (and closes), and closes on shutdown (`ChannelShouldQuiesceEvent`) once the request in
    /// progress is answered.
    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let expiry as ClientDeadlines.Expiry:
            let what = expiry == .head ? "request head" : "request body"
            perform(
                machine.timedOut(expiry), problem: BreakGlassError(.requestTimeout, "the \(what) did not arrive in time"), context: context)
        case is ChannelShouldQuiesceEvent:
            if machine.quiesce() == .close { context.close(promise: nil) }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Bytes that are not HTTP/1.1 get a `400` when no answer is under way; either way nothing more
    /// is read, and the connection closes once the request in progress (if any) is answered.
    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            if machine.otherFailure() == .close { context.close(promise: nil) }
            return
        }
        let problem = BreakGlassError(.invalidRequest, "the request is not valid HTTP/1.1 (\(error))")
        perform(machine.parserFailed(), problem: problem, context: context)
    }

    /// The connection is ready for its next request: takes the ones that arrived meanwhile, and
    /// reads again once none waits.
    private func becameIdle(context: ChannelHandlerContext) {
        while let action = machine.nextWaiting() {
            perform(action, context: context)
        }
        switch machine.settle() {
        case .close:
            context.close(promise: nil)
        case .proceed(let flushExchange, let read):
            if flushExchange { exchange?.clientReadComplete() }
            if read { context.read() }
        }
    }

    // MARK: answer deadlines

    /// The proxied request in progress must get the start of its answer by `deadline`.
    func awaitAnswer(by deadline: NIODeadline) {
        perform(machine.awaitAnswer(by: deadline))
    }

    /// The proxied answer's head is going out: from now on its bytes must keep moving.
    func answerStreaming() {
        handlers.deadlines.answerStreaming()
    }

    func answerBegan() {
        machine.answerBegan()
    }

    private func perform(_ action: ConnectionStateMachine.TimerAction) {
        switch action {
        case .none:
            break
        case .arm(let deadline):
            answerTimer?.cancel()
            guard let context else { return }
            answerTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                answerTimer = nil
                perform(machine.answerTimerFired(now: .now()))
            }
        case .answerTimedOut:
            exchange?.answerTimedOut()
        }
    }

    // MARK: reads

    package func read(context: ChannelHandlerContext) {
        if machine.readRequested() { context.read() }
    }

    /// Stops reading from the client (the upstream cannot take more, or it is not there yet).
    func holdReads() {
        machine.holdReads()
    }

    func releaseReads() {
        if machine.releaseReads(), let context { context.read() }
    }

    // MARK: API

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let request = APIRequest(
            method: head.method,
            uri: head.uri,
            headers: head.headers,
            body: body,
            source: context.channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        )
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let route = self.route
        let eventLoop = context.eventLoop
        Task {
            let response = await route(request)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.respond(context: context, version: head.version, response: response, keepAlive: head.isKeepAlive)
            }
        }
    }

    func respond(
        context: ChannelHandlerContext, version: HTTPVersion, response: APIResponse, keepAlive: Bool, drainFirst: Bool = false
    ) {
        let keepAlive = machine.answering(keepAlive: keepAlive, drainFirst: drainFirst)
        handlers.deadlines.answerFinished()
        var headers = HTTPHeaders()
        if !response.headers.contains(where: { $0.0 == "Content-Type" }) { headers.add(name: "Content-Type", value: "application/json") }
        headers.add(name: "Content-Length", value: String(response.body.readableBytes))
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        // The listener speaks only TLS: browsers that visit it (a pathway's web pages come through it) keep to https.
        headers.add(name: "Strict-Transport-Security", value: "max-age=31536000")
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let responseHead = HTTPResponseHead(version: version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
        becameIdle(context: context)
    }

    // MARK: HTTP proxy

    private func startProxy(context: ChannelHandlerContext, head: HTTPRequestHead, target: ProxyTarget, proxy: any PathwayAccess) {
        let started = ContinuousClock.now
        authorize(
            context: context, proxy: proxy, credentials: head.headers.first(name: "authorization"), header: "Authorization",
            pathway: target.pathway, kind: .http, request: ProxyRequestLine(head)
        ) { handler, context, admission, head, early in
            let exchange = HTTPProxyExchange(
                client: handler,
                context: context,
                proxy: proxy,
                admission: admission,
                head: head,
                upstreamURI: admission.pathway.upstream.basePath + target.path,
                auditPath: target.auditPath(keepingQueryValues: admission.pathway.proxy.auditQuery),
                started: started
            )
            handler.exchange = exchange
            handler.machine.exchangeStarted()
            exchange.start(early: early)
        }
    }

    /// Called by the exchange when it is over: answers with `answer` when the upstream gave none.
    func exchangeFinished(keepAlive: Bool, answer: BreakGlassError?, written: EventLoopFuture<Void>?) {
        exchange = nil
        guard let context else { return }
        if let answer {
            respond(context: context, version: .http1_1, response: .error(answer), keepAlive: false)
            return
        }
        let keepAlive = machine.answering(keepAlive: keepAlive)
        handlers.deadlines.answerFinished()
        if !keepAlive {
            let channel = context.channel
            if let written {
                written.whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
        }
        becameIdle(context: context)
    }

    /// Verifies the credentials off the loop (or, for this connection's last verified token, on it),
    /// then continues on the loop with the admission, the request's head and the parts that came
    /// meanwhile; refusals are answered here.
    func authorize(
        context: ChannelHandlerContext,
        proxy: any PathwayAccess,
        credentials: String?,
        header: String,
        pathway: String,
        kind: Pathway.Kind,
        request: ProxyRequestLine?,
        then proceed:
            @escaping (GatewayChannelHandler, ChannelHandlerContext, ProxyAdmission, HTTPRequestHead, [HTTPServerRequestPart]) ->
            Void
    ) {
        let channel = context.channel
        if let result = proxy.reauthorize(
            credentials: credentials, pathwayName: pathway, kind: kind, request: request, channel: channel, cached: verified)
        {
            admitted(context: context, result, then: proceed)
            return
        }
        let source = channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        let loopBound = NIOLoopBound((self, context, proceed), eventLoop: context.eventLoop)
        Task {
            let result = await proxy.authorize(
                credentials: credentials, header: header, pathwayName: pathway, kind: kind, request: request, source: source,
                channel: channel)
            channel.eventLoop.execute {
                let (handler, context, proceed) = loopBound.value
                handler.admitted(context: context, result, then: proceed)
            }
        }
    }

    private func admitted(
        context: ChannelHandlerContext,
        _ result: Result<(credentials: String, admission: ProxyAdmission), BreakGlassError>,
        then proceed: (GatewayChannelHandler, ChannelHandlerContext, ProxyAdmission, HTTPRequestHead, [HTTPServerRequestPart]) ->
            Void
    ) {
        guard let request = machine.admissionWanted(clientActive: context.channel.isActive) else {
            // Answered meanwhile (a malformed or slow request), or the client left: the place taken
            // in the audit log for this access goes back unused.
            if case .success = result { proxy?.audit.cancelReservation() }
            return
        }
        switch result {
        case .success(let admitted):
            verified = admitted
            proceed(self, context, admitted.admission, request.head, request.early)
        case .failure(let error):
            refuse(context: context, error)
        }
    }

    /// Answers a refused admission (nothing, when the request was answered meanwhile).
    func refuse(context: ChannelHandlerContext, _ error: BreakGlassError) {
        guard let refusal = machine.refusal() else { return }
        respond(
            context: context, version: refusal.version, response: .error(error), keepAlive: refusal.keepAlive,
            drainFirst: refusal.drainFirst)
    }
}
