import BreakGlassCore
import NIOCore
import NIOHTTP1

/// One client connection of the TLS listener, as values: which request is being answered, the
/// requests that wait behind it (HTTP/1.1 pipelining), whether reads flow, when the proxied answer
/// is due, and when the connection closes. Its handler (`GatewayChannelHandler`) feeds it events
/// and performs the actions it returns; nothing here does I/O, so every state and event can be
/// tested with plain values.
///
/// Pipelining is kept here rather than in NIO's `HTTPServerPipelineHandler`: that handler stops
/// reading once a request is complete until its answer ends, which costs two poller changes per
/// keep-alive request. Here reading stops only while a request waits behind another one.
package struct ConnectionStateMachine {
    /// Where the connection is in its current request.
    package enum State: Equatable {
        /// Between requests.
        case idle
        /// An API request whose body is being collected (bounded by `maximumBodyBytes`).
        case receiving(HTTPRequestHead, ByteBuffer)
        /// The request was refused while its body may still arrive; the connection closes once the
        /// answer is out, and nothing after it is served.
        case discarding
        /// An API request is with the router.
        case responding
        /// A proxied request or a CONNECT waits for its admission; parts that arrive meanwhile are kept.
        case authorizing(HTTPRequestHead, [HTTPServerRequestPart])
        /// A proxied request is with its exchange; `requestEnded` once its last part was passed on.
        case proxying(requestEnded: Bool)
        /// The connection is handed to a tunnel; the HTTP handlers are leaving.
        case tunneling
        /// A refused request without a body was answered before its end arrived: the end is awaited,
        /// then the connection serves the next request.
        case draining
    }

    package private(set) var state = State.idle
    /// The connection closes once the request in progress is answered, whatever the request asked
    /// (shutdown, or bytes that are not HTTP after it).
    package private(set) var closesAfterAnswer = false
    /// The gateway is shutting down: no tunnel starts.
    private var quiescing = false
    /// Parts of requests that arrived while an earlier one was being answered, in order. Reading
    /// stops while any wait, so this holds at most what the reads before that stop delivered.
    private var pipelined = CircularBuffer<HTTPServerRequestPart>()
    private var readsHeld = false
    private var pendingRead = false
    /// When the upstream must have begun answering the proxied request in progress, and when the
    /// armed timer fires: one timer serves the connection's deadlines (a kept-alive connection's
    /// requests move the deadline; a timer that fires early waits for the deadline then in force).
    // Internal, not private: the answer deadline's methods (`ConnectionStateMachine+AnswerDeadline`) use them.
    var answerDeadline: NIODeadline?
    var timerAt: NIODeadline?
    private let limits: HTTPLimits
    /// Whether `/p/` and CONNECT are served (not on a listener that serves only an API).
    private let servesPathways: Bool

    /// A connection at its start, idle.
    package init(limits: HTTPLimits, servesPathways: Bool) {
        self.limits = limits
        self.servesPathways = servesPathways
    }

    /// Whether a request is being answered, so that the next one has to wait.
    package var isBusy: Bool {
        switch state {
        case .responding, .authorizing, .proxying: true
        case .idle, .receiving, .discarding, .tunneling, .draining: false
        }
    }

    package var isProxying: Bool {
        if case .proxying = state { true } else { false }
    }

    package var isTunneling: Bool {
        if case .tunneling = state { true } else { false }
    }

    /// How many parts wait behind the request being answered.
    package var waitingParts: Int { pipelined.count }

    // MARK: request parts

    /// A part from the decoder: it waits when another request is being answered, else it is handled.
    package mutating func received(_ part: HTTPServerRequestPart) -> PartAction {
        if !pipelined.isEmpty || (part.isHead && isBusy) {
            pipelined.append(part)
            return .none
        }
        return handle(part)
    }

    /// The next part that waited, handled, once it may go on (nil: none may).
    package mutating func nextWaiting() -> PartAction? {
        guard let part = pipelined.first, !(part.isHead && isBusy) else { return nil }
        pipelined.removeFirst()
        return handle(part)
    }

    private mutating func handle(_ part: HTTPServerRequestPart) -> PartAction {
        // By state first, then by part: a switch over both would copy them into a pair per part.
        switch state {
        case .idle:
            guard case .head(let head) = part else { return .close }
            return .begin(begin(head))
        case .receiving(let head, var body):
            switch part {
            case .head:
                return .close
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= limits.maximumBodyBytes else {
                    state = .discarding
                    return .refuse(head.version, Self.tooLarge(limits))
                }
                // The state lets go of the buffer first, so that appending does not copy it.
                state = .idle
                body.writeBuffer(&chunk)
                state = .receiving(head, body)
                return .none
            case .end:
                state = .responding
                return .dispatch(head, body)
            }
        case .authorizing(let head, var early):
            guard !part.isHead else { return .close }
            state = .idle
            early.append(part)
            state = .authorizing(head, early)
            return .none
        case .proxying:
            guard !part.isHead else { return .close }
            if part.isEnd { state = .proxying(requestEnded: true) }
            return .forward(part)
        case .discarding:
            // The connection closes once its answer is written; nothing after the refused request is served.
            return .none
        case .draining:
            switch part {
            case .head:
                return .close
            case .body:
                return .none
            case .end:
                state = .idle
                return .drained
            }
        case .responding, .tunneling:
            return .close
        }
    }

    private mutating func begin(_ head: HTTPRequestHead) -> RequestStart {
        if let problem = headerProblem(head) {
            state = .discarding
            return .refuse(head.version, problem)
        }
        if servesPathways, head.method == .CONNECT {
            guard let pathway = ProxyTarget.connectPathway(head.uri) else {
                state = .discarding
                return .refuse(
                    head.version, BreakGlassError(.invalidRequest, "CONNECT needs PATHWAY:PORT, e.g. CONNECT db-primary:5432"))
            }
            state = .authorizing(head, [])
            readsHeld = true
            return .tunnel(head, pathway: pathway)
        }
        if servesPathways, head.uri.hasPrefix("/p/") {
            switch ProxyTarget.parse(head.uri) {
            case .failure(let error):
                state = .discarding
                return .refuse(head.version, error)
            case .success(let target):
                state = .authorizing(head, [])
                // A body waits until the upstream can take it; a request without one needs no
                // holding (a pipelined request waits in `pipelined` until this answer ends).
                if ProxyHeaders.hasBody(head) { readsHeld = true }
                return .proxy(head, target)
            }
        }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maximumBodyBytes {
            state = .discarding
            return .refuse(head.version, Self.tooLarge(limits))
        }
        state = .receiving(head, ByteBuffer())
        return .collectBody
    }

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

    // MARK: admission

    /// The admission of the request in progress arrived: its head and the parts that came
    /// meanwhile, or nil when it is no longer wanted (answered meanwhile, or the client left).
    package func admissionWanted(clientActive: Bool) -> (head: HTTPRequestHead, early: [HTTPServerRequestPart])? {
        guard clientActive, case .authorizing(let head, let early) = state else { return nil }
        return (head, early)
    }

    /// A proxied request's exchange takes over (after `admissionWanted`).
    package mutating func exchangeStarted() {
        guard case .authorizing(_, let early) = state else { return }
        state = .proxying(requestEnded: early.contains(where: \.isEnd))
    }

    /// How to answer a refused admission; nil when the request was answered already.
    package func refusal() -> Refusal? {
        guard case .authorizing(let head, let early) = state else { return nil }
        if head.method != .CONNECT, !ProxyHeaders.hasBody(head), head.isKeepAlive {
            return Refusal(version: head.version, keepAlive: true, drainFirst: !early.contains(where: \.isEnd))
        }
        return Refusal(version: .http1_1, keepAlive: false, drainFirst: false)
    }

    /// The connection becomes a tunnel (CONNECT admitted, or a WebSocket upgrade), unless the
    /// request was answered meanwhile or the gateway began shutting down.
    package mutating func tunnelStarting() -> TunnelStart {
        switch state {
        case .authorizing, .proxying:
            if quiescing { return .shuttingDown }
            state = .tunneling
            pipelined.removeAll()
            return .start
        case .idle, .receiving, .discarding, .responding, .tunneling, .draining:
            return .answered
        }
    }

    // MARK: answers

    /// The answer to the request in progress is written (by the gateway, or the exchange ended):
    /// returns whether the connection stays open after it. `drainFirst`: the request's end is
    /// still to come and is awaited before the next request.
    package mutating func answering(keepAlive: Bool, drainFirst: Bool = false) -> Bool {
        let keepAlive = keepAlive && !closesAfterAnswer
        switch state {
        case .responding, .authorizing, .proxying:
            state = keepAlive ? (drainFirst ? .draining : .idle) : .discarding
        case .idle, .receiving, .discarding, .tunneling, .draining:
            break
        }
        // Nothing after a connection's last answer is served.
        if !keepAlive { pipelined.removeAll() }
        readsHeld = false
        answerDeadline = nil
        return keepAlive
    }

    /// After an answer (and the waiting parts it let through): close, or go on.
    package mutating func settle() -> Settled {
        if closesAfterAnswer, case .idle = state { return .close }
        return .proceed(flushExchange: isProxying, read: takePendingRead())
    }

    // MARK: failures and shutdown

    /// Bytes that are not HTTP/1.1 (`HTTPParserError`): a `400` when no answer is under way; either
    /// way nothing more is read, and the connection closes once the request in progress is answered.
    package mutating func parserFailed() -> FailureAction {
        switch state {
        case .idle where pipelined.isEmpty:
            state = .discarding
            return .answer
        case .authorizing(_, let early) where early.contains(where: \.isEnd):
            // The request is complete: the bytes that are not HTTP came after it.
            return closeWhenAnswered()
        case .receiving, .authorizing:
            // A malformed body (RFC 9112 §6.3): answered, and the connection closes.
            state = .discarding
            return .answer
        case .proxying(requestEnded: true):
            return closeWhenAnswered()
        case .proxying(requestEnded: false):
            // Part of the request may be upstream already: the exchange closes that connection.
            pipelined.removeAll()
            closesAfterAnswer = true
            return .failExchange
        case .idle, .responding, .discarding, .draining, .tunneling:
            return closeWhenAnswered()
        }
    }

    /// Any other error of the connection: it closes, except a refused one, which closes once its
    /// answer is written (closing now could cut that answer short).
    package func otherFailure() -> FailureAction {
        if case .discarding = state { return .none }
        return .close
    }

    /// A deadline of `ClientDeadlines` passed: a request that is still arriving gets `408` when
    /// nothing has been answered for it yet; otherwise the connection closes.
    package mutating func timedOut(_ expiry: ClientDeadlines.Expiry) -> FailureAction {
        pipelined.removeAll()
        closesAfterAnswer = true
        switch (state, expiry) {
        case (.idle, .head), (.receiving, .body), (.authorizing, .body):
            state = .discarding
            return .answer
        case (.proxying, .body):
            return .failExchange
        case (.responding, .head), (.authorizing, .head), (.proxying, .head):
            // The next head is late while this request is still being answered: the answer goes
            // out, then the connection closes.
            return .none
        default:
            return .close
        }
    }

    /// Shutdown (`ChannelShouldQuiesceEvent`): the connection closes once the request in progress is answered.
    package mutating func quiesce() -> FailureAction {
        quiescing = true
        return closeWhenAnswered()
    }

    private mutating func closeWhenAnswered() -> FailureAction {
        closesAfterAnswer = true
        pipelined.removeAll()
        switch state {
        case .idle, .draining: return .close
        // `.discarding` closes when its answer is written; a tunnel is no longer this connection's.
        case .receiving, .responding, .authorizing, .proxying, .discarding, .tunneling: return .none
        }
    }

    /// The client's connection ended: true when the exchange must hear it. A request still being
    /// authorized is dropped, so nothing is sent upstream for a client that is gone.
    package mutating func clientClosed() -> Bool {
        switch state {
        case .proxying:
            return true
        case .authorizing:
            state = .discarding
            return false
        case .idle, .receiving, .discarding, .responding, .tunneling, .draining:
            return false
        }
    }

    // MARK: reads

    /// The pipeline asks for a read: true when it may go ahead now, else it is held back.
    package mutating func readRequested() -> Bool {
        if readsHeld || !pipelined.isEmpty {
            pendingRead = true
            return false
        }
        return true
    }

    /// Stops reading from the client (the upstream cannot take more, or it is not there yet).
    package mutating func holdReads() {
        readsHeld = true
    }

    /// Reading may go on: true when a read that was held back is due now.
    package mutating func releaseReads() -> Bool {
        readsHeld = false
        return takePendingRead()
    }

    private mutating func takePendingRead() -> Bool {
        guard pendingRead, pipelined.isEmpty, !readsHeld else { return false }
        pendingRead = false
        return true
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
