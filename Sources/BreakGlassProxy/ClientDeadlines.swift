import NIOCore

/// The deadlines of one client connection as a value: the connection's handlers report what
/// happens (bytes, request heads and ends, answers, reads held), and `expiry(at:)` says which
/// deadline, if any, has passed. Every state has one:
///
/// - the TLS handshake and the first request head: `headTimeout` from the connection's start;
/// - a later head: `headTimeout` from its first byte;
/// - a body: `bodyMinRate` bytes per second once `bodyGrace` has passed, and no gap longer than
///   `idleTimeout`; time while the gateway holds reads (backpressure, a request waiting its turn)
///   does not count against the client;
/// - between requests, with nothing to answer: `idleTimeout`;
/// - an answer under way: no deadline here while it is awaited (the route or the pathway's
///   `response_timeout` bounds it); once it streams, the client may not leave it unread (the
///   connection not writable) for longer than `idleTimeout`. A quiet upstream (a log tail, a
///   long poll) is not the client's fault and is not cut here;
/// - a tunnel: no byte either way for `tunnelIdleTimeout`.
public struct ClientDeadlines: Sendable {
    /// Which deadline passed.
    public enum Expiry: Sendable, Equatable {
        /// Nothing to do for `idleTimeout`.
        case idle
        /// The request head (or the TLS handshake before the first) did not arrive in time.
        case head
        /// The request body arrived too slowly, or stalled.
        case body
        /// The answer stopped moving: the client does not read it, or it stopped coming.
        case answer
        /// The tunnel carried nothing for `tunnelIdleTimeout`.
        case tunnel
    }

    /// The limits, as NIO time amounts.
    public struct Settings: Sendable, Equatable {
        /// Time for the TLS handshake and first head from the connection's start, and for each later head from its first byte.
        public var headTimeout: TimeAmount
        /// Longest quiet time: between requests, between body bytes, and while the client leaves an answer unread.
        public var idleTimeout: TimeAmount
        /// Least body rate, in bytes per second, once `bodyGrace` has passed.
        public var bodyMinRate: Int
        /// How long a body may arrive at any rate.
        public var bodyGrace: TimeAmount
        /// A tunnel that carries no byte either way for this long has expired.
        public var tunnelIdleTimeout: TimeAmount

        /// Settings with the given limits.
        public init(
            headTimeout: TimeAmount, idleTimeout: TimeAmount, bodyMinRate: Int, bodyGrace: TimeAmount, tunnelIdleTimeout: TimeAmount
        ) {
            self.headTimeout = headTimeout
            self.idleTimeout = idleTimeout
            self.bodyMinRate = bodyMinRate
            self.bodyGrace = bodyGrace
            self.tunnelIdleTimeout = tunnelIdleTimeout
        }

        /// How often the deadlines are checked: often enough to act within a quarter of the
        /// shortest limit, at most once a second.
        public var checkInterval: TimeAmount {
            let shortest = min(headTimeout, idleTimeout, bodyGrace > .zero ? bodyGrace : idleTimeout)
            return max(.milliseconds(50), min(.seconds(1), .nanoseconds(shortest.nanoseconds / 4)))
        }
    }

    private enum Reading {
        /// No byte of the next request yet.
        case waiting
        /// Bytes of a head since `since`, or (the first request) the connection since `since`.
        case head(since: NIODeadline)
        /// The body since `since`: `bytes` so far, the last at `lastByte`. Both times move later by
        /// the time the gateway held reads.
        case body(since: NIODeadline, bytes: Int, lastByte: NIODeadline)
        /// A tunnel: the connection no longer carries HTTP.
        case tunnel
    }

    private enum Answer {
        case none
        /// The request is being answered; its first byte is not out yet.
        case awaited
        /// Answer bytes are going out.
        case streaming
    }

    /// The limits this connection is held to.
    public let settings: Settings
    private var reading: Reading
    private var answer = Answer.none
    /// The last time anything happened, for the idle and tunnel deadlines.
    private var lastActivity: NIODeadline
    /// Since when the gateway holds reads, while it does.
    private var heldSince: NIODeadline?
    /// Since when the connection is not writable (the client does not read what it is sent).
    private var blockedSince: NIODeadline?

    /// A connection that started at `now`: its first head (TLS handshake included) is due by
    /// `now + headTimeout`.
    public init(settings: Settings, now: NIODeadline) {
        self.settings = settings
        self.reading = .head(since: now)
        self.lastActivity = now
    }

    // MARK: events

    /// Bytes came from the client.
    public mutating func bytesRead(_ count: Int, now: NIODeadline) {
        lastActivity = now
        switch reading {
        case .waiting:
            reading = .head(since: now)
        case .body(let since, let bytes, _):
            reading = .body(since: since, bytes: bytes + count, lastByte: now)
        case .head, .tunnel:
            break
        }
    }

    /// Bytes went to the client.
    public mutating func bytesWritten(now: NIODeadline) {
        lastActivity = now
    }

    /// The connection became writable or stopped being so.
    public mutating func writabilityChanged(writable: Bool, now: NIODeadline) {
        if writable {
            blockedSince = nil
        } else if blockedSince == nil {
            blockedSince = now
        }
    }

    /// A request head was decoded; its body (possibly empty) follows.
    public mutating func headReceived(now: NIODeadline) {
        guard case .tunnel = reading else {
            reading = .body(since: now, bytes: 0, lastByte: now)
            return
        }
    }

    /// The request's end was decoded; the next bytes start the next head.
    public mutating func requestEnded(now: NIODeadline) {
        lastActivity = now
        guard case .tunnel = reading else {
            reading = .waiting
            return
        }
    }

    /// The gateway began to answer a request (it is routed, authorized or proxied).
    public mutating func answerStarted() {
        answer = .awaited
    }

    /// The answer's first bytes are going out.
    public mutating func answerStreaming(now: NIODeadline) {
        answer = .streaming
    }

    /// The answer is complete (or the request was refused); the connection waits for the next.
    public mutating func answerFinished(now: NIODeadline) {
        answer = .none
        lastActivity = now
    }

    /// The connection became a tunnel.
    public mutating func tunnelStarted(now: NIODeadline) {
        reading = .tunnel
        answer = .none
        lastActivity = now
        heldSince = nil
    }

    /// The gateway stopped reading from the client (nothing asked for more bytes).
    public mutating func readsHeld(now: NIODeadline) {
        if heldSince == nil { heldSince = now }
    }

    /// The gateway reads from the client again.
    public mutating func readsResumed(now: NIODeadline) {
        guard let since = heldSince else { return }
        heldSince = nil
        // A held stretch counts against neither the head, the rate nor the gap since the last byte.
        let stretch = now - since
        switch reading {
        case .head(let start):
            reading = .head(since: start + stretch)
        case .body(let start, let bytes, let lastByte):
            reading = .body(since: start + stretch, bytes: bytes, lastByte: lastByte + stretch)
        case .waiting, .tunnel:
            break
        }
    }

    // MARK: verdict

    /// The deadline that has passed at `now`, or nil.
    public func expiry(at now: NIODeadline) -> Expiry? {
        switch reading {
        case .tunnel:
            return now - lastActivity > settings.tunnelIdleTimeout ? .tunnel : nil
        case .head(let since):
            // While reads are held the client cannot send: its clock stops.
            if heldSince == nil, now - since > settings.headTimeout { return .head }
        case .body(let since, let bytes, let lastByte):
            guard heldSince == nil else { break }
            if now - lastByte > settings.idleTimeout { return .body }
            let active = now - since
            if settings.bodyMinRate > 0, active > settings.bodyGrace {
                // Bytes owed by now, saturating: a long body at a high rate must not overflow.
                let (product, overflow) = Int64(settings.bodyMinRate).multipliedReportingOverflow(
                    by: (active - settings.bodyGrace).nanoseconds)
                let owed = overflow ? Int64.max / 1_000_000_000 : product / 1_000_000_000
                if Int64(bytes) < owed { return .body }
            }
        case .waiting:
            break
        }
        switch answer {
        case .none:
            if case .waiting = reading, now - lastActivity > settings.idleTimeout { return .idle }
        case .awaited:
            break
        case .streaming:
            if let blockedSince, now - blockedSince > settings.idleTimeout { return .answer }
        }
        return nil
    }
}
