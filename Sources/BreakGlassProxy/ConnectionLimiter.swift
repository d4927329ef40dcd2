import NIOCore
import Synchronization

/// Counts a listener's open client connections, all together and per source, so that one source
/// (or a flood from many) cannot take every socket: a connection over either cap is closed at
/// accept, before its TLS handshake costs anything.
public final class ConnectionLimiter: Sendable {
    /// Why a connection was not admitted.
    public enum Refusal: Sendable, Equatable {
        case total(limit: Int)
        case source(limit: Int)
    }

    private struct Counts {
        var total = 0
        var bySource: [String: Int] = [:]
    }

    private let counts = Mutex(Counts())

    /// A limiter with no connection counted.
    public init() {}

    /// Counts a new connection from `source` (nil: unknown, counted under one key) against the
    /// caps; nil when admitted, and then `release(source:)` must follow when it closes.
    public func admit(source: String?, total: Int, perSource: Int) -> Refusal? {
        let key = source ?? "unknown"
        return counts.withLock { counts in
            guard counts.total < total else { return .total(limit: total) }
            let fromSource = counts.bySource[key, default: 0]
            guard fromSource < perSource else { return .source(limit: perSource) }
            counts.total += 1
            counts.bySource[key] = fromSource + 1
            return nil
        }
    }

    /// A connection admitted for `source` closed.
    public func release(source: String?) {
        let key = source ?? "unknown"
        counts.withLock { counts in
            counts.total = max(0, counts.total - 1)
            guard let count = counts.bySource[key] else { return }
            counts.bySource[key] = count > 1 ? count - 1 : nil
        }
    }

    /// Open connections, all together and from `source`.
    public func open(source: String? = nil) -> (total: Int, source: Int) {
        counts.withLock { ($0.total, $0.bySource[source ?? "unknown", default: 0]) }
    }
}
