/// Counts failed logins per user and per source address and locks either after too many in a window.
///
/// A value type: callers keep it behind their own lock. Memory is bounded by `maximumEntries`.
public struct LockoutTracker: Sendable {
    /// What the tracker says about an attempt.
    public enum Status: Sendable, Equatable {
        case open
        /// Locked for this long yet; `scope` says whether the user or the source is locked.
        case locked(retryAfter: Duration, scope: Scope)
    }

    public enum Scope: String, Sendable {
        case user, source
    }

    private struct Entry {
        var failures: [ContinuousClock.Instant] = []
        var lockedUntil: ContinuousClock.Instant?
        /// Attempts admitted and not yet finished; they count toward the limit, so that parallel
        /// guesses cannot overrun it.
        var inFlight = 0
    }

    public private(set) var policy: LockoutPolicy
    public let maximumEntries: Int
    private var users: [String: Entry] = [:]
    private var sources: [String: Entry] = [:]

    public init(policy: LockoutPolicy, maximumEntries: Int = 100_000) {
        self.policy = policy
        self.maximumEntries = max(16, maximumEntries)
    }

    /// Applies a new policy; existing locks run out as they were set.
    public mutating func update(policy: LockoutPolicy) {
        self.policy = policy
    }

    /// Whether a login for this user from this source may run now.
    public func status(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        if let until = users[user]?.lockedUntil, until > now {
            return .locked(retryAfter: now.duration(to: until), scope: .user)
        }
        if let until = sources[source]?.lockedUntil, until > now {
            return .locked(retryAfter: now.duration(to: until), scope: .source)
        }
        return .open
    }

    /// Admits an attempt when neither the user nor the source is locked and the failures so far plus
    /// the attempts in progress stay under each limit. An admitted attempt must be finished with
    /// `recordFailure` or `recordSuccess`.
    public mutating func admit(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        let current = status(user: user, source: source, now: now)
        guard current == .open else { return current }
        let windowStart = now.advanced(by: .zero - policy.window)
        func busy(_ entry: Entry?, _ limit: Int) -> Bool {
            guard let entry else { return false }
            return entry.failures.filter { $0 >= windowStart }.count + entry.inFlight >= limit
        }
        if busy(users[user], policy.failures) { return .locked(retryAfter: .seconds(1), scope: .user) }
        if busy(sources[source], policy.sourceFailures) { return .locked(retryAfter: .seconds(1), scope: .source) }
        if users[user] == nil && users.count >= maximumEntries / 2 {
            Self.prune(&users, policy: policy, now: now, keep: maximumEntries / 2)
        }
        if sources[source] == nil && sources.count >= maximumEntries / 2 {
            Self.prune(&sources, policy: policy, now: now, keep: maximumEntries / 2)
        }
        users[user, default: Entry()].inFlight += 1
        sources[source, default: Entry()].inFlight += 1
        return .open
    }

    /// Counts a failed login (finishing an admitted attempt, if any); returns the status after it.
    @discardableResult
    public mutating func recordFailure(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        Self.finish(&users, key: user)
        Self.finish(&sources, key: source)
        Self.fail(&users, key: user, limit: policy.failures, policy: policy, now: now, maximum: maximumEntries)
        Self.fail(&sources, key: source, limit: policy.sourceFailures, policy: policy, now: now, maximum: maximumEntries)
        return status(user: user, source: source, now: now)
    }

    /// Finishes an attempt that ended without a verdict (PAM broken, gateway busy).
    public mutating func recordAbandoned(user: String, source: String) {
        Self.finish(&users, key: user)
        Self.finish(&sources, key: source)
    }

    /// Finishes an admitted attempt and forgets the user's failures (the source's count stays).
    public mutating func recordSuccess(user: String, source: String) {
        Self.finish(&users, key: user)
        Self.finish(&sources, key: source)
        if let entry = users[user], entry.lockedUntil == nil, entry.inFlight == 0 { users[user] = nil }
    }

    private static func finish(_ table: inout [String: Entry], key: String) {
        if let count = table[key]?.inFlight, count > 0 { table[key]?.inFlight = count - 1 }
    }

    /// Number of users and sources tracked (for tests and metrics).
    public var trackedCount: Int { users.count + sources.count }

    private static func fail(
        _ table: inout [String: Entry],
        key: String,
        limit: Int,
        policy: LockoutPolicy,
        now: ContinuousClock.Instant,
        maximum: Int
    ) {
        if table[key] == nil && table.count >= maximum / 2 { prune(&table, policy: policy, now: now, keep: maximum / 2) }
        var entry = table[key] ?? Entry()
        if let until = entry.lockedUntil, until <= now { entry.lockedUntil = nil }
        let windowStart = now.advanced(by: .zero - policy.window)
        entry.failures.removeAll { $0 < windowStart }
        entry.failures.append(now)
        if entry.failures.count >= limit {
            entry.lockedUntil = now.advanced(by: policy.duration)
            entry.failures.removeAll()
        }
        table[key] = entry
    }

    /// Drops entries with no recent failures and no lock; if still too many, drops unlocked entries.
    private static func prune(_ table: inout [String: Entry], policy: LockoutPolicy, now: ContinuousClock.Instant, keep: Int) {
        let windowStart = now.advanced(by: .zero - policy.window)
        table = table.filter { _, entry in
            (entry.lockedUntil.map { $0 > now } ?? false) || entry.failures.contains { $0 >= windowStart } || entry.inFlight > 0
        }
        if table.count >= keep {
            for key in table.keys.filter({ table[$0]?.lockedUntil == nil && table[$0]?.inFlight == 0 }).prefix(table.count - keep + 1) {
                table[key] = nil
            }
        }
    }
}
