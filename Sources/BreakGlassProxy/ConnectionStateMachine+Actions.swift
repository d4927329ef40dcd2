import BreakGlassCore
import NIOCore
import NIOHTTP1

/// What the connection machine tells its handler to do.
extension ConnectionStateMachine {
    /// What to do with a request part the decoder delivered.
    package enum PartAction: Equatable {
        case none
        /// Close the connection: a part out of order (the decoder should never send one).
        case close
        /// A request begins: the clock of its answer starts (`ClientDeadlines`), then `start`.
        case begin(RequestStart)
        /// Answer `error` and close once it is written.
        case refuse(HTTPVersion, BreakGlassError)
        /// An API request is complete: hand it to the router.
        case dispatch(HTTPRequestHead, ByteBuffer)
        /// Pass the part to the proxied request's exchange.
        case forward(HTTPServerRequestPart)
        /// The refused request has ended: its answer is finished, and the connection is idle again.
        case drained
    }

    /// How a request that just began goes on.
    package enum RequestStart: Equatable {
        /// Answer `error` and close once it is written.
        case refuse(HTTPVersion, BreakGlassError)
        /// Admit `CONNECT pathway:port`; reads are held until the tunnel takes over or it is refused.
        case tunnel(HTTPRequestHead, pathway: String)
        /// Admit a proxied request (reads are held when it has a body).
        case proxy(HTTPRequestHead, ProxyTarget)
        /// An API request: its body is collected.
        case collectBody
    }

    /// What to do after an error, a client deadline or a shutdown request.
    package enum FailureAction: Equatable {
        case none
        /// Close the connection now.
        case close
        /// Answer the problem (as HTTP/1.1) and close once it is written.
        case answer
        /// Tell the exchange its client failed; the exchange answers or closes.
        case failExchange
    }

    /// How the connection goes on once an answer is out.
    package enum Settled: Equatable {
        case close
        /// `flushExchange`: a proxied request took over (its upstream gets what was passed on);
        /// `read`: a read that was held back is due.
        case proceed(flushExchange: Bool, read: Bool)
    }

    /// What to do with the timer of the answer deadline.
    package enum TimerAction: Equatable {
        case none
        /// Cancel any armed timer and arm one for this deadline.
        case arm(NIODeadline)
        /// The upstream did not begin its answer in time: tell the exchange.
        case answerTimedOut
    }

    /// How a refused admission is answered.
    package struct Refusal: Equatable {
        package var version: HTTPVersion
        /// A proxied request without a body leaves nothing unread: the connection stays for the
        /// next request. A body (or a tunnel) was not read, so that connection cannot be reused.
        package var keepAlive: Bool
        /// The request's end has not arrived yet: it is awaited before the next request.
        package var drainFirst: Bool
    }

    /// Whether an admitted tunnel starts.
    package enum TunnelStart: Equatable {
        /// The connection becomes the tunnel.
        case start
        /// The request was answered meanwhile (a deadline passed): no tunnel.
        case answered
        /// The gateway is shutting down: the request is refused, and no tunnel outlives it.
        case shuttingDown
    }
}
