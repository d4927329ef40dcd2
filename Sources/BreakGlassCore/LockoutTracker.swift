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

    /// Counts a failed login; returns the status after it.
    @discardableResult
    public mutating func recordFailure(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        Self.fail(&users, key: user, limit: policy.failures, policy: policy, now: now, maximum: maximumEntries)
        Self.fail(&sources, key: source, limit: policy.sourceFailures, policy: policy, now: now, maximum: maximumEntries)
        return status(user: user, source: source, now: now)
    }

    /// Forgets the user's failures after a successful login (the source's count stays).
    public mutating func recordSuccess(user: String) {
        if users[user]?.lockedUntil == nil { users[user] = nil }
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
            (entry.lockedUntil.map { $0 > now } ?? false) || entry.failures.contains { $0 >= windowStart }
        }
        if table.count >= keep {
            for key in table.keys.filter({ table[$0]?.lockedUntil == nil }).prefix(table.count - keep + 1) {
                table[key] = nil
            }
        }
    }
}
