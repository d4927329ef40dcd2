import NIOCore
import Synchronization

/// Keep-alive connections to upstreams, per pathway, destination and event loop, with a
/// per-pathway limit on open connections so that one slow pathway cannot take every socket ("fail
/// small"). The destination (where the connections go, as the caller names it) keeps a pathway that
/// a reload moved from being handed connections to its old upstream.
public final class UpstreamPool: Sendable {
    /// Why no connection could be had.
    public enum Refusal: Error, Sendable {
        /// The pathway already has `limit` connections open.
        case busy(limit: Int)
    }

    private struct Idle {
        var channel: any Channel
        var since: NIODeadline
    }

    /// Where idle connections wait: their destination and event loop.
    private struct Place: Hashable {
        var destination: String
        var loop: ObjectIdentifier
    }

    private struct PathwayState {
        var open = 0
        var idle: [Place: [Idle]] = [:]

        /// The newest idle connection at `place` that is open and younger than `timeout`; older ones
        /// met on the way go to `stale`.
        mutating func takeIdle(at place: Place, now: NIODeadline, timeout: TimeAmount, stale: inout [any Channel]) -> (any Channel)? {
            while let idle = idle[place]?.popLast() {
                if idle.channel.isActive && now - idle.since < timeout { return idle.channel }
                stale.append(idle.channel)
            }
            return nil
        }
    }

    private let state = Mutex<[String: PathwayState]>([:])
    /// Upstream connections each session has in use (claimed and not yet released).
    private let claims = Mutex<[String: Int]>([:])
    /// Idle connections older than this are closed instead of reused.
    public let idleTimeout: TimeAmount

    /// An empty pool.
    public init(idleTimeout: TimeAmount = .seconds(30)) {
        self.idleTimeout = idleTimeout
    }

    /// A new connection made with `connect`, counted against the pathway's limit (an idle one is
    /// taken with `takeIdle` first); fails with `Refusal.busy` when the pathway is at its limit.
    public func open(
        pathway: String,
        destination: String,
        limit: Int,
        on eventLoop: any EventLoop,
        connect: () -> EventLoopFuture<any Channel>
    ) -> EventLoopFuture<any Channel> {
        let reserved = state.withLock { pools in
            // In place: a copy of the pathway's state would copy its idle lists.
            func reserve(in pool: inout PathwayState) -> Bool {
                guard pool.open < limit else { return false }
                pool.open += 1
                return true
            }
            return reserve(in: &pools[pathway, default: PathwayState()])
        }
        guard reserved else { return eventLoop.makeFailedFuture(Refusal.busy(limit: limit)) }
        let connecting = connect()
        connecting.whenComplete { result in
            switch result {
            case .success(let channel):
                channel.closeFuture.whenComplete { _ in self.closed(channel, pathway: pathway, destination: destination) }
            case .failure:
                self.state.withLock { $0[pathway]?.open -= 1 }
            }
        }
        return connecting
    }

    /// An idle connection of `pathway` to `destination` on `eventLoop`, taken at once (no future),
    /// or nil when there is none; `open` then connects (or refuses at the limit).
    public func takeIdle(pathway: String, destination: String, on eventLoop: any EventLoop) -> (any Channel)? {
        let place = Place(destination: destination, loop: ObjectIdentifier(eventLoop))
        let now = NIODeadline.now()
        var stale: [any Channel] = []
        let timeout = idleTimeout
        let channel = state.withLock { $0[pathway]?.takeIdle(at: place, now: now, timeout: timeout, stale: &stale) }
        for channel in stale { channel.close(promise: nil) }
        return channel
    }

    /// Returns a connection after a complete exchange; one that cannot be reused is closed.
    public func checkin(_ channel: any Channel, pathway: String, destination: String, reusable: Bool) {
        guard reusable, channel.isActive else {
            channel.close(promise: nil)
            return
        }
        let place = Place(destination: destination, loop: ObjectIdentifier(channel.eventLoop))
        state.withLock { $0[pathway, default: PathwayState()].idle[place, default: []].append(Idle(channel: channel, since: .now())) }
    }

    /// Claims one upstream connection for `session`, before one is taken or opened for it; false
    /// when the session already has `limit` in use, so that one session cannot take all of a
    /// pathway's connections. A claim is given back with `release(session:)`.
    public func claim(session: String, limit: Int) -> Bool {
        claims.withLock { claims in
            let inUse = claims[session, default: 0]
            guard inUse < limit else { return false }
            claims[session] = inUse + 1
            return true
        }
    }

    /// Gives back a claim of `claim(session:limit:)`.
    public func release(session: String) {
        claims.withLock { claims in
            guard let inUse = claims[session] else { return }
            claims[session] = inUse > 1 ? inUse - 1 : nil
        }
    }

    /// Upstream connections `session` has in use.
    public func inUse(session: String) -> Int {
        claims.withLock { $0[session, default: 0] }
    }

    /// Open connections of a pathway (in use or idle).
    public func openConnections(pathway: String) -> Int {
        state.withLock { $0[pathway]?.open ?? 0 }
    }

    private func closed(_ channel: any Channel, pathway: String, destination: String) {
        let place = Place(destination: destination, loop: ObjectIdentifier(channel.eventLoop))
        state.withLock { pools in
            pools[pathway]?.open -= 1
            pools[pathway]?.idle[place]?.removeAll { $0.channel === channel }
        }
    }
}
