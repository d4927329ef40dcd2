import BreakGlassCore
import NIOCore
import NIOHTTP1

/// One proxied HTTP request as values, from the client's head to the upstream's last byte: when
/// the request goes upstream, how the answer streams back, the retry rule, whether the upstream
/// connection may go back to the pool, and how the exchange ends. Its owner (`HTTPProxyExchange`)
/// feeds it events and performs the actions it returns; nothing here does I/O.
package struct ProxyExchangeStateMachine {
    /// What the machine knows of the request and its pathway from the start.
    package struct Request: Sendable {
        package var head: HTTPRequestHead
        package var pathway: String
        /// The upstream, for messages (written out only when one is needed).
        package var upstream: Upstream
        package var maxConnectionsPerSession: Int
        /// `response_timeout`, for messages.
        package var responseTimeout: Duration

        package init(
            head: HTTPRequestHead, pathway: String, upstream: Upstream, maxConnectionsPerSession: Int, responseTimeout: Duration
        ) {
            self.head = head
            self.pathway = pathway
            self.upstream = upstream
            self.maxConnectionsPerSession = maxConnectionsPerSession
            self.responseTimeout = responseTimeout
        }
    }

    /// Where the exchange is.
    package enum State: Equatable {
        /// No upstream connection yet: request parts that arrive are kept (reads are held, so at
        /// most what one read delivered).
        case connecting(waiting: [HTTPServerRequestPart])
        /// The request goes upstream and the answer comes back.
        case exchanging
        /// The upstream switched to WebSocket: its `101` waits for the decoder's end, then the tunnel.
        case upgrading(HTTPResponseHead)
        case finished
    }

    /// How the exchange ends.
    package struct Finish: Equatable {
        /// The outcome as audited (`ok`, `timeout`, `upstream closed`, …).
        package var outcome: String
        package var status: Int?
        /// The client connection may serve another request.
        package var keepClient: Bool
        /// The client gets this error, when no answer went out yet.
        package var answer: BreakGlassError?
        /// The answer began already: the client connection is cut.
        package var closeClient: Bool
        /// The upstream connection goes back to the pool (a clean, complete exchange; never one made
        /// for an upgrade, whose decoder keeps the bytes after an answer for a tunnel).
        package var poolConnection: Bool
        /// The exchange holds one of its session's upstream connection claims, which goes back.
        package var releaseClaim: Bool
    }

    /// What to do.
    package enum Action: Equatable {
        case none
        /// Connect upstream; `fresh`: a new connection, never one from the pool.
        case connect(fresh: Bool)
        /// A connection arrived for an exchange that is over: close it (not pooled).
        case discardConnection
        /// The connection closed before it was used: handle it as `upstreamClosed` (or a retry).
        case closedOnArrival
        /// Send the request head, then the parts that waited; answer `100 Continue` first when asked.
        case sendRequest(waiting: [HTTPServerRequestPart], answerContinue: Bool)
        /// Pass a request part upstream; `extendDeadline`: the answer is due `response_timeout` from now.
        case forward(HTTPServerRequestPart, extendDeadline: Bool)
        /// The answer began (its deadline stops) and nothing goes to the client yet.
        case answerBegan
        /// The answer's head goes to the client (its deadline stops).
        case answerHead(HTTPResponseHead)
        case answerBody(ByteBuffer)
        /// The answer's end goes to the client, then the exchange ends.
        case answerEnd(HTTPHeaders?, Finish)
        /// The pooled connection closed unanswered: send the request again on a new one (the
        /// attempt that failed is recorded first).
        case retry
        /// The WebSocket upgrade is complete: the connections become a tunnel; the session's
        /// claim goes with it (`holdsClaim`).
        case upgrade(HTTPResponseHead, holdsClaim: Bool)
        case finish(Finish)
    }

    package private(set) var state = State.connecting(waiting: [])
    package let request: Request
    /// The request asks for a WebSocket upgrade.
    package let webSocket: Bool
    /// The client's request has been read to its end.
    package private(set) var requestEnded = false
    private var answerHeadSent = false
    private var answerEnded = false
    /// Whether the upstream connection may go back to the pool. A request with unusual framing
    /// (chunked, or a body on a method that defines none) closes it instead, so that a
    /// disagreement about where the request ends cannot outlive the exchange.
    private var upstreamReusable: Bool
    /// The upstream's answer is awaited (the client connection's timer holds its deadline).
    private var awaitingAnswer = false
    private var status: Int?
    package private(set) var bytesIn = 0
    package private(set) var bytesOut = 0
    /// Why the upstream connection failed, first reason only (a failed TLS handshake, say).
    private var upstreamFailure: String?
    /// Whether the connection came from the pool, and whether the request was sent again.
    private var reusedConnection = false
    private var retried = false
    private var claimed = false

    /// A request admitted for a pathway, before anything happened.
    package init(request: Request) {
        // Read before `request` is stored, so that storing it is its last use and no copy is made.
        self.webSocket = ProxyHeaders.isWebSocketUpgrade(request.head.headers)
        self.upstreamReusable = !ProxyHeaders.hasUnusualFraming(request.head)
        self.request = request
    }

    // MARK: start and connection

    /// The exchange starts: `claimed` tells whether the session had an upstream connection to spare.
    package mutating func start(claimed: Bool) -> Action {
        guard claimed else {
            let limit = request.maxConnectionsPerSession
            return fail(
                BreakGlassError(
                    .upstreamBusy,
                    "this session already uses \(limit) upstream connections of pathway \(request.pathway) (max_connections_per_session)",
                    retryAfterSeconds: 1),
                outcome: "busy")
        }
        self.claimed = true
        // An upgrade wants a new connection: many servers accept one only as a connection's first request.
        return .connect(fresh: webSocket)
    }

    /// An upstream connection is here; `reused`: it carried earlier exchanges; `active`: it is still open.
    package mutating func connected(reused: Bool, active: Bool) -> Action {
        guard case .connecting(let waiting) = state else { return .discardConnection }
        reusedConnection = reused
        state = .exchanging
        // Closed between the pool and here: nobody heard its close.
        guard active else { return .closedOnArrival }
        awaitingAnswer = true
        // The gateway answers `Expect: 100-continue` itself once the upstream is there (the
        // upstream does not see the header, and the decoder drops informational answers).
        return .sendRequest(waiting: waiting, answerContinue: ProxyHeaders.expectsContinue(request.head.headers) && !requestEnded)
    }

    /// No upstream connection could be made (or none was usable).
    package mutating func connectFailed(_ error: BreakGlassError) -> Action {
        fail(error, outcome: "connect failed")
    }

    // MARK: from the client

    /// A request part from the client.
    package mutating func clientPart(_ part: HTTPServerRequestPart) -> Action {
        switch part {
        case .head: return .none
        case .body(let buffer): bytesIn += buffer.readableBytes
        case .end: requestEnded = true
        }
        switch state {
        case .connecting(var waiting):
            state = .finished
            waiting.append(part)
            state = .connecting(waiting: waiting)
            return .none
        case .exchanging, .upgrading:
            return .forward(part, extendDeadline: extendDeadline())
        case .finished:
            return .none
        }
    }

    /// The parts that waited were sent: the answer is due from the last one.
    package mutating func extendDeadline() -> Bool {
        guard !answerHeadSent, state != .finished else { return false }
        awaitingAnswer = true
        return true
    }

    /// The client's connection ended: the upstream connection is closed, then the exchange ends.
    package mutating func clientClosed() -> Action {
        guard state != .finished else { return .none }
        upstreamReusable = false
        return .finish(finish(outcome: answerEnded ? "ok" : "client closed", keepClient: false))
    }

    /// The client's request went wrong after its head (a malformed or too slow body): the client
    /// gets `error` when no answer has begun, and the upstream connection, which may hold part of
    /// the request, is closed, never pooled.
    package mutating func clientFailed(_ error: BreakGlassError) -> Action {
        fail(error, outcome: error.code == .requestTimeout ? "client too slow" : "bad request")
    }

    // MARK: from the upstream

    /// A part of the upstream's answer.
    package mutating func upstreamRead(_ part: HTTPClientResponsePart) -> Action {
        guard state == .exchanging || isUpgrading else { return .none }
        switch part {
        case .head(let response):
            awaitingAnswer = false
            status = Int(response.status.code)
            if webSocket, response.status == .switchingProtocols {
                state = .upgrading(response)
                return .answerBegan
            }
            if response.status == .switchingProtocols {
                // A switch nobody asked for: what follows is not HTTP, and nothing would bound it.
                return fail(
                    BreakGlassError(.upstreamUnreachable, "pathway \(request.pathway): the upstream switched protocols unasked"),
                    outcome: "upstream failed")
            }
            // 100 Continue and friends: the encoder adds its own framing.
            if response.status.code < 200 { return .answerBegan }
            upstreamReusable = upstreamReusable && response.isKeepAlive
            answerHeadSent = true
            return .answerHead(response)
        case .body(let buffer):
            bytesOut += buffer.readableBytes
            return .answerBody(buffer)
        case .end(let trailers):
            if case .upgrading(let response) = state {
                // The decoder stops after this part; bytes after it reach the tunnel when it is removed.
                state = .finished
                let holdsClaim = claimed
                claimed = false
                return .upgrade(response, holdsClaim: holdsClaim)
            }
            answerEnded = true
            guard requestEnded else {
                // The upstream answered before the request body ended: this connection cannot go on.
                upstreamReusable = false
                return .answerEnd(trailers, finish(outcome: "ok", keepClient: false))
            }
            return .answerEnd(trailers, finish(outcome: "ok", keepClient: true))
        }
    }

    private var isUpgrading: Bool {
        if case .upgrading = state { true } else { false }
    }

    /// The upstream connection reported an error (its close follows).
    package mutating func upstreamFailed(reason: String) {
        if upstreamFailure == nil { upstreamFailure = reason }
    }

    /// Whether a close of the upstream connection now would send the request again: a pooled
    /// connection that the upstream had closed, an idempotent request without a body, once.
    package var mayRetry: Bool {
        state == .exchanging && reusedConnection && !retried && !answerHeadSent && upstreamFailure == nil
            && Self.isIdempotent(request.head.method) && !ProxyHeaders.hasBody(request.head)
    }

    /// The retry goes ahead (the audit log took a place for the failed attempt's record).
    package mutating func retrying() -> Action {
        guard mayRetry else { return .none }
        retried = true
        awaitingAnswer = false
        state = .connecting(waiting: requestEnded ? [.end(nil)] : [])
        return .retry
    }

    /// The upstream connection closed (when it may not be retried, or the retry could not be recorded).
    package mutating func upstreamClosed() -> Action {
        guard state == .exchanging || isUpgrading, !answerEnded else { return .none }
        upstreamReusable = false
        if answerHeadSent {
            var finish = finish(outcome: "upstream closed", keepClient: false)
            finish.closeClient = true
            return .finish(finish)
        }
        let why = upstreamFailure ?? "closed the connection without an answer"
        return fail(
            BreakGlassError(.upstreamUnreachable, "pathway \(request.pathway): \(request.upstream): \(why)"),
            outcome: upstreamFailure == nil ? "upstream closed" : "upstream failed")
    }

    /// The answer deadline passed (the client connection's timer fired).
    package mutating func answerTimedOut() -> Action {
        guard awaitingAnswer, state != .finished, !answerHeadSent else { return .none }
        awaitingAnswer = false
        return fail(
            BreakGlassError(
                .upstreamTimeout,
                "pathway \(request.pathway): \(request.upstream) did not answer within \(request.responseTimeout.policyText)"),
            outcome: "timeout")
    }

    // MARK: ending

    /// Answers the client with `error` (when nothing was sent yet) and ends the exchange.
    private mutating func fail(_ error: BreakGlassError, outcome: String) -> Action {
        guard state != .finished else { return .none }
        upstreamReusable = false
        status = error.code.httpStatus
        var finish = finish(outcome: outcome, keepClient: false)
        if answerHeadSent {
            finish.closeClient = true
        } else {
            finish.answer = error
        }
        return .finish(finish)
    }

    private mutating func finish(outcome: String, keepClient: Bool) -> Finish {
        state = .finished
        awaitingAnswer = false
        let releaseClaim = claimed
        claimed = false
        return Finish(
            outcome: outcome, status: status, keepClient: keepClient && request.head.isKeepAlive, answer: nil, closeClient: false,
            poolConnection: !webSocket && upstreamReusable && requestEnded && answerEnded, releaseClaim: releaseClaim)
    }

    /// RFC 9110 §9.2.2: methods whose repetition has the effect of one request.
    package static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: true
        default: false
        }
    }
}
