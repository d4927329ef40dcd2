import BreakGlassCore
import BreakGlassProxy
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1

/// One client connection: API requests (bounded, answered by the router off the event loop),
/// proxied HTTP requests to `/p/PATHWAY/...` (streamed), and `CONNECT PATHWAY:PORT` tunnels.
///
/// Requests are served one at a time, in order. A request that arrives while another is being
/// answered (HTTP/1.1 pipelining) waits here, and reading stops until it is taken; a connection
/// that sends one request at a time keeps reading throughout (no poller change per request).
final class GatewayChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// The request was refused while its body still arrives; the rest is dropped.
        case discarding
        case responding
        /// Waiting for authorization of a proxied request; parts that arrive meanwhile are kept.
        case authorizing(HTTPRequestHead, [HTTPServerRequestPart])
        case proxying(HTTPProxyExchange)
        /// The connection is being handed to a tunnel; the HTTP handlers are about to go.
        case tunneling
        /// A refused request without a body was answered before its end arrived; the end is
        /// awaited, then the connection serves the next request.
        case draining
    }

    private let route: @Sendable (APIRequest) async -> APIResponse
    /// The data path; nil on a listener that serves only an API (the admin socket).
    private let proxy: PathwayProxy?
    private let limits: HTTPLimits
    private let handlers: HTTPServerHandlers
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var readsHeld = false
    private var pendingRead = false
    /// The last credentials (header value) verified on this connection, so that keep-alive requests
    /// skip the signature check.
    private var verified: (credentials: String, admission: PathwayProxy.Admission)?
    /// Parts of requests that arrived while an earlier one was being answered, in order. Reading
    /// stops while any wait, so this holds at most what the reads before that stop delivered.
    private var pipelined = CircularBuffer<HTTPServerRequestPart>()
    /// The connection closes once the request in progress is answered, whatever the request asked
    /// (shutdown, or bytes that are not HTTP after it).
    private(set) var closesAfterAnswer = false
    /// When the upstream must have begun answering the proxied request in progress.
    private var answerDeadline: NIODeadline?
    /// One timer for the connection's answer deadlines: a kept-alive connection's requests move the
    /// deadline, and the timer, when it fires early, waits for the deadline then in force. So
    /// requests do not each schedule and cancel a task.
    private var answerTimer: (at: NIODeadline, task: Scheduled<Void>)?

    init(
        route: @escaping @Sendable (APIRequest) async -> APIResponse, proxy: PathwayProxy?, limits: HTTPLimits, handlers: HTTPServerHandlers
    ) {
        self.route = route
        self.proxy = proxy
        self.limits = limits
        self.handlers = handlers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        answerTimer?.task.cancel()
        answerTimer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .tunneling = state {
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
        if !pipelined.isEmpty || (part.isHead && isBusy) {
            pipelined.append(part)
            return
        }
        handle(context: context, part)
    }

    /// Whether a request is being answered, so that the next one has to wait.
    private var isBusy: Bool {
        switch state {
        case .responding, .authorizing, .proxying: true
        case .idle, .receiving, .discarding, .tunneling, .draining: false
        }
    }

    private func handle(context: ChannelHandlerContext, _ part: HTTPServerRequestPart) {
        // By state first, then by part: a switch over both would copy them into a pair per part.
        switch state {
        case .idle:
            guard case .head(let head) = part else { return outOfOrder(context: context) }
            handlers.deadlines.answerStarted()
            if let problem = headerProblem(head) {
                state = .discarding
                respond(context: context, version: head.version, response: .error(problem), keepAlive: false)
            } else if let proxy, head.method == .CONNECT {
                startTunnel(context: context, head: head, proxy: proxy)
            } else if let proxy, head.uri.hasPrefix("/p/") {
                startProxy(context: context, head: head, proxy: proxy)
            } else if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maximumBodyBytes {
                state = .discarding
                respond(context: context, version: head.version, response: .error(Self.tooLarge(limits)), keepAlive: false)
            } else {
                state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
            }
        case .receiving(let head, var body):
            switch part {
            case .head:
                outOfOrder(context: context)
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= limits.maximumBodyBytes else {
                    state = .discarding
                    respond(context: context, version: head.version, response: .error(Self.tooLarge(limits)), keepAlive: false)
                    return
                }
                // The state lets go of the buffer first, so that appending does not copy it.
                state = .idle
                body.writeBuffer(&chunk)
                state = .receiving(head, body)
            case .end:
                state = .responding
                dispatch(context: context, head: head, body: body)
            }
        case .authorizing(let head, var early):
            guard !part.isHead else { return outOfOrder(context: context) }
            early.append(part)
            state = .authorizing(head, early)
        case .proxying(let exchange):
            guard !part.isHead else { return outOfOrder(context: context) }
            exchange.clientPart(part)
        case .discarding:
            // The connection closes once its answer is written; nothing after the refused request is served.
            break
        case .draining:
            switch part {
            case .head: outOfOrder(context: context)
            case .body: break
            case .end:
                state = .idle
                handlers.deadlines.answerFinished()
                becameIdle(context: context)
            }
        case .responding, .tunneling:
            outOfOrder(context: context)
        }
    }

    /// A part out of order: the HTTP decoder should never do this; close rather than guess.
    private func outOfOrder(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state { exchange.clientReadComplete() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch state {
        case .proxying(let exchange):
            exchange.clientClosed()
        case .authorizing:
            // Nobody is left to answer: the authorization's outcome is dropped (`admitted`), so
            // nothing is sent upstream for a client that is gone.
            state = .discarding
        default:
            break
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .proxying(let exchange) = state { exchange.clientBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    /// Answers a request whose head or body came too slowly with `408` when no answer is under way
    /// (and closes), and closes on shutdown (`ChannelShouldQuiesceEvent`) once the request in
    /// progress is answered.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let expiry as ClientDeadlines.Expiry:
            timedOut(context: context, expiry)
        case is ChannelShouldQuiesceEvent:
            closeWhenAnswered(context: context)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Bytes that are not HTTP/1.1 get a `400` when no answer is under way; either way nothing more
    /// is read, and the connection closes once the request in progress (if any) is answered.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            // A connection that is `.discarding` closes once its answer is written; closing now
            // could cut that answer short.
            if case .discarding = state { return }
            context.close(promise: nil)
            return
        }
        let problem = BreakGlassError(.invalidRequest, "the request is not valid HTTP/1.1 (\(error))")
        switch state {
        case .idle where pipelined.isEmpty:
            state = .discarding
            respond(context: context, version: .http1_1, response: .error(problem), keepAlive: false)
        case .authorizing(_, let early) where early.contains(where: \.isEnd):
            // The request is complete: the bytes that are not HTTP came after it.
            closeWhenAnswered(context: context)
        case .receiving, .authorizing:
            // A malformed body (RFC 9112 §6.3): answered, and the connection closes.
            state = .discarding
            respond(context: context, version: .http1_1, response: .error(problem), keepAlive: false)
        case .proxying(let exchange) where exchange.requestEnded:
            closeWhenAnswered(context: context)
        case .proxying(let exchange):
            // Part of the request may be upstream already: the exchange closes that connection.
            pipelined.removeAll()
            closesAfterAnswer = true
            exchange.clientFailed(problem)
        case .idle, .responding, .discarding, .draining, .tunneling:
            closeWhenAnswered(context: context)
        }
    }

    /// A deadline of `ClientDeadlines` passed: a request that is still arriving gets `408` when
    /// nothing has been answered for it yet; otherwise the connection just closes.
    private func timedOut(context: ChannelHandlerContext, _ expiry: ClientDeadlines.Expiry) {
        let what = expiry == .head ? "request head" : "request body"
        let problem = BreakGlassError(.requestTimeout, "the \(what) did not arrive in time")
        pipelined.removeAll()
        closesAfterAnswer = true
        switch (state, expiry) {
        case (.idle, .head), (.receiving, .body), (.authorizing, .body):
            state = .discarding
            respond(context: context, version: .http1_1, response: .error(problem), keepAlive: false)
        case (.proxying(let exchange), .body):
            exchange.clientFailed(problem)
        case (.responding, .head), (.authorizing, .head), (.proxying, .head):
            // The next head is late while this request is still being answered: the answer goes
            // out, then the connection closes.
            closeWhenAnswered(context: context)
        default:
            context.close(promise: nil)
        }
    }

    private func closeWhenAnswered(context: ChannelHandlerContext) {
        closesAfterAnswer = true
        pipelined.removeAll()
        switch state {
        case .idle, .draining: context.close(promise: nil)
        // `.discarding` closes when its answer is written; a tunnel is no longer this handler's.
        case .receiving, .responding, .authorizing, .proxying, .discarding, .tunneling: break
        }
    }

    /// The connection is ready for its next request: takes the ones that arrived meanwhile, and
    /// reads again once none waits.
    private func becameIdle(context: ChannelHandlerContext) {
        while let part = pipelined.first, !(part.isHead && isBusy) {
            pipelined.removeFirst()
            handle(context: context, part)
        }
        if closesAfterAnswer, case .idle = state {
            context.close(promise: nil)
            return
        }
        if case .proxying(let exchange) = state { exchange.clientReadComplete() }
        readIfWanted(context: context)
    }

    // MARK: answer deadlines

    /// The proxied request in progress must get the start of its answer by `deadline`.
    func awaitAnswer(by deadline: NIODeadline) {
        answerDeadline = deadline
        if let timer = answerTimer {
            guard deadline < timer.at else { return }
            timer.task.cancel()
        }
        armAnswerTimer(at: deadline)
    }

    /// The proxied answer's head is going out: from now on its bytes must keep moving.
    func answerStreaming() {
        handlers.deadlines.answerStreaming()
    }

    func answerBegan() {
        answerDeadline = nil
    }

    private func armAnswerTimer(at deadline: NIODeadline) {
        guard let context else { return }
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            answerTimer = nil
            guard let due = answerDeadline else { return }
            if due > .now() {
                armAnswerTimer(at: due)
            } else if case .proxying(let exchange) = state {
                answerDeadline = nil
                exchange.answerTimedOut()
            }
        }
        answerTimer = (deadline, task)
    }

    // MARK: reads

    func read(context: ChannelHandlerContext) {
        if readsHeld || !pipelined.isEmpty {
            pendingRead = true
        } else {
            context.read()
        }
    }

    /// Stops reading from the client (the upstream cannot take more, or it is not there yet).
    func holdReads() {
        readsHeld = true
    }

    func releaseReads() {
        readsHeld = false
        if let context { readIfWanted(context: context) }
    }

    /// Passes on a read that was held back, once nothing holds reads any more.
    private func readIfWanted(context: ChannelHandlerContext) {
        guard pendingRead, pipelined.isEmpty, !readsHeld else { return }
        pendingRead = false
        context.read()
    }

    // MARK: API

    private func headerProblem(_ head: HTTPRequestHead) -> BreakGlassError? {
        guard head.headers.count <= limits.maximumHeaderCount else {
            return BreakGlassError(.headersTooLarge, "more than \(limits.maximumHeaderCount) header fields")
        }
        let bytes = head.headers.reduce(head.uri.utf8.count) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        guard bytes <= limits.maximumHeaderBytes else {
            return BreakGlassError(.headersTooLarge, "the request head is larger than \(limits.maximumHeaderBytes) bytes")
        }
        // Framing the gateway could not pass on unambiguously (RFC 9112 §6), repeated credentials
        // or Host, and bytes that end a field: refused for every request, API or proxied.
        return ProxyHeaders.requestProblem(head)
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

    private func respond(context: ChannelHandlerContext, version: HTTPVersion, response: APIResponse, keepAlive: Bool) {
        let keepAlive = keepAlive && !closesAfterAnswer
        switch state {
        case .responding, .authorizing, .proxying: state = keepAlive ? .idle : .discarding
        default: break
        }
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
        readsHeld = false
        becameIdle(context: context)
    }

    // MARK: HTTP proxy

    private func startProxy(context: ChannelHandlerContext, head: HTTPRequestHead, proxy: PathwayProxy) {
        let started = ContinuousClock.now
        let target: ProxyTarget
        switch ProxyTarget.parse(head.uri) {
        case .failure(let error):
            state = .discarding
            respond(context: context, version: head.version, response: .error(error), keepAlive: false)
            return
        case .success(let parsed):
            target = parsed
        }
        state = .authorizing(head, [])
        // A body waits until the upstream can take it; a request without one needs no holding (a
        // pipelined request waits in `pipelined` until this answer ends).
        if ProxyHeaders.hasBody(head) { holdReads() }
        authorize(
            context: context, proxy: proxy, credentials: head.headers.first(name: "authorization"), header: "Authorization",
            pathway: target.pathway, kind: .http, request: PathwayProxy.RequestLine(head)
        ) { handler, context, admission in
            guard case .authorizing(let head, let early) = handler.state else { return }
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
            handler.state = .proxying(exchange)
            exchange.start(early: early)
        }
    }

    /// Called by the exchange when it is over: answers with `answer` when the upstream gave none.
    func exchangeFinished(keepAlive: Bool, answer: BreakGlassError?, written: EventLoopFuture<Void>?) {
        guard let context else { return }
        if let answer {
            respond(context: context, version: .http1_1, response: .error(answer), keepAlive: false)
            return
        }
        let keepAlive = keepAlive && !closesAfterAnswer
        state = keepAlive ? .idle : .discarding
        readsHeld = false
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
    /// then continues on the loop with the admission; refusals are answered here.
    private func authorize(
        context: ChannelHandlerContext,
        proxy: PathwayProxy,
        credentials: String?,
        header: String,
        pathway: String,
        kind: Pathway.Kind,
        request: PathwayProxy.RequestLine?,
        then proceed: @escaping (GatewayChannelHandler, ChannelHandlerContext, PathwayProxy.Admission) -> Void
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
        _ result: Result<(credentials: String, admission: PathwayProxy.Admission), BreakGlassError>,
        then proceed: (GatewayChannelHandler, ChannelHandlerContext, PathwayProxy.Admission) -> Void
    ) {
        guard case .authorizing = state, context.channel.isActive else {
            // Answered meanwhile (a malformed or slow request), or the client left: the place taken
            // in the audit log for this access goes back unused.
            if case .success = result { proxy?.audit.cancelReservation() }
            return
        }
        switch result {
        case .success(let admitted):
            verified = admitted
            proceed(self, context, admitted.admission)
        case .failure(let error):
            refuse(context: context, error)
        }
    }

    private func refuse(context: ChannelHandlerContext, _ error: BreakGlassError) {
        // A proxied request without a body leaves nothing unread: the connection stays for the next
        // request. A body (or a tunnel) was not read, so that connection cannot be reused.
        if case .authorizing(let head, let early) = state, head.method != .CONNECT, !ProxyHeaders.hasBody(head), head.isKeepAlive {
            let ended = early.contains(where: \.isEnd)
            respond(context: context, version: head.version, response: .error(error), keepAlive: true)
            if !ended { state = .draining }
            return
        }
        respond(context: context, version: .http1_1, response: .error(error), keepAlive: false)
    }

    // MARK: tunnels

    private func startTunnel(context: ChannelHandlerContext, head: HTTPRequestHead, proxy: PathwayProxy) {
        guard let pathway = ProxyTarget.connectPathway(head.uri) else {
            state = .discarding
            let error = BreakGlassError(.invalidRequest, "CONNECT needs PATHWAY:PORT, e.g. CONNECT db-primary:5432")
            respond(context: context, version: head.version, response: .error(error), keepAlive: false)
            return
        }
        state = .authorizing(head, [])
        holdReads()
        authorize(
            context: context, proxy: proxy, credentials: head.headers.first(name: "proxy-authorization"), header: "Proxy-Authorization",
            pathway: pathway, kind: .tcp, request: nil
        ) { handler, context, admission in
            handler.connectTunnel(context: context, admission: admission, proxy: proxy)
        }
    }

    private func connectTunnel(context: ChannelHandlerContext, admission: PathwayProxy.Admission, proxy: PathwayProxy) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        proxy.tcpUpstream(admission.pathway, on: context.eventLoop).assumeIsolated().whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .failure(let error):
                proxy.audit.cancelReservation()
                handler.refuse(context: context, proxy.upstreamError(error, pathway: admission.pathway))
            case .success(let upstream):
                guard context.channel.isActive else {
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
    func switchToTunnel(upstream: any Channel, answer: ByteBuffer, admission: PathwayProxy.Admission, mode: String, closeReserved: Bool) {
        guard let proxy else {
            upstream.close(promise: nil)
            return
        }
        guard let context, context.channel.isActive else {
            // The client left while the tunnel was being recorded: its end is recorded too.
            upstream.close(promise: nil)
            proxy.recordTunnelClosed(
                admission, mode: mode, bytesIn: 0, bytesOut: 0, duration: .zero, ending: "client closed before the tunnel started",
                reserved: closeReserved)
            return
        }
        state = .tunneling
        handlers.deadlines.tunnelStarted()
        let started = ContinuousClock.now
        let (clientGlue, upstreamGlue) = GlueHandler.pair()
        let client = context.channel
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
            if let decoder = try? upstreamSync.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self) {
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
            self.readsHeld = false
            self.pendingRead = false
            _ = client.pipeline.syncOperations.removeHandler(self)
            _ = upstream.setOption(.autoRead, value: true)
            client.read()
        }
        client.closeFuture.and(upstream.closeFuture).assumeIsolated().whenComplete { _ in
            proxy.recordTunnelClosed(
                admission, mode: mode, bytesIn: clientGlue.bytesRead, bytesOut: upstreamGlue.bytesRead,
                duration: started.duration(to: .now),
                ending: proxy.sessionEnding(admission.session.session) ?? "closed", reserved: closeReserved)
        }
        client.closeFuture.whenComplete { _ in upstream.close(promise: nil) }
        upstream.closeFuture.whenComplete { _ in client.close(promise: nil) }
    }
}

extension HTTPPart {
    fileprivate var isHead: Bool {
        if case .head = self { true } else { false }
    }

    fileprivate var isEnd: Bool {
        if case .end = self { true } else { false }
    }
}
