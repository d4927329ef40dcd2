/// Counts failed logins and decides whether a login may run: a hard lock per user at one source
/// address, a hard lock per source address across users, and a progressive delay per user across
/// sources (so that nobody can lock a named user out from elsewhere).
///
/// A value type: callers keep it behind their own lock. Memory is bounded by `maximumEntries`.
public struct LockoutTracker: Sendable {
    /// What the tracker says about an attempt.
    public enum Status: Sendable, Equatable {
        case open
        /// May run after waiting this long: the user's logins failed often lately, from any sources.
        case delayed(Duration)
        /// Locked for this long yet; `scope` says whether the user at this source or the whole source
        /// is locked.
        case locked(retryAfter: Duration, scope: Scope)
    }

    /// What a lock covers.
    public enum Scope: String, Sendable {
        /// The user at one source address.
        case user
        /// One source address, all users.
        case source
    }

    private struct Pair: Hashable {
        var user: String
        var source: String
    }

    /// Failures and the lock of one (user, source) pair or one source.
    private struct Entry {
        var failures: [ContinuousClock.Instant] = []
        var lockedUntil: ContinuousClock.Instant?
        /// Attempts admitted and not yet finished; they count toward the limit, so that parallel
        /// guesses cannot overrun it.
        var inFlight = 0
    }

    /// Failures of one user from every source (for the delay), with the source of each.
    private struct UserEntry {
        var failures: [(time: ContinuousClock.Instant, source: String)] = []
        var inFlight = 0
    }

    /// The thresholds and durations in force.
    public private(set) var policy: LockoutPolicy
    /// Most entries kept, pairs, sources and users together.
    public let maximumEntries: Int
    private var pairs: [Pair: Entry] = [:]
    private var sources: [String: Entry] = [:]
    private var users: [String: UserEntry] = [:]

    /// `maximumEntries` bounds pairs, sources and users together (a third each).
    public init(policy: LockoutPolicy, maximumEntries: Int = 100_000) {
        self.policy = policy
        self.maximumEntries = max(48, maximumEntries)
    }

    /// Applies a new policy; existing locks run out as they were set.
    public mutating func update(policy: LockoutPolicy) {
        self.policy = policy
    }

    /// Whether a login for this user from this source may run now, after a delay, or not at all.
    public func status(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        if let until = pairs[Pair(user: user, source: source)]?.lockedUntil, until > now {
            return .locked(retryAfter: now.duration(to: until), scope: .user)
        }
        if let until = sources[source]?.lockedUntil, until > now {
            return .locked(retryAfter: now.duration(to: until), scope: .source)
        }
        let delay = userDelay(user, now: now)
        return delay > .zero ? .delayed(delay) : .open
    }

    /// The wait before PAM runs for `user`: none below `policy.failures` failures (plus attempts in
    /// progress) within the window from all sources, then 1 s, doubling with each further one, up to
    /// `policy.userDelayMax`.
    public func userDelay(_ user: String, now: ContinuousClock.Instant) -> Duration {
        guard policy.userDelayMax > .zero, let entry = users[user] else { return .zero }
        let windowStart = now.advanced(by: .zero - policy.window)
        let count = entry.failures.count { $0.time >= windowStart } + entry.inFlight
        return Self.delay(failures: count, policy: policy)
    }

    /// The delay after `failures` failures of one user under `policy`.
    public static func delay(failures: Int, policy: LockoutPolicy) -> Duration {
        guard policy.userDelayMax > .zero, failures >= max(1, policy.failures) else { return .zero }
        let doublings = failures - max(1, policy.failures)
        guard doublings < 32 else { return policy.userDelayMax }
        return min(policy.userDelayMax, .seconds(1 << doublings))
    }

    /// Admits an attempt when neither the pair nor the source is locked and the failures so far plus
    /// the attempts in progress stay under each limit; `.delayed` admits it after a wait. An admitted
    /// attempt (open or delayed) must be finished with `recordFailure`, `recordSuccess` or
    /// `recordAbandoned`.
    public mutating func admit(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        let current = status(user: user, source: source, now: now)
        if case .locked = current { return current }
        let pair = Pair(user: user, source: source)
        let windowStart = now.advanced(by: .zero - policy.window)
        func busy(_ entry: Entry?, _ limit: Int) -> Bool {
            guard let entry else { return false }
            return entry.failures.count { $0 >= windowStart } + entry.inFlight >= limit
        }
        if busy(pairs[pair], policy.failures) { return .locked(retryAfter: .seconds(1), scope: .user) }
        if busy(sources[source], policy.sourceFailures) { return .locked(retryAfter: .seconds(1), scope: .source) }
        let keep = maximumEntries / 3
        if pairs[pair] == nil && pairs.count >= keep { Self.prune(&pairs, windowStart: windowStart, now: now, keep: keep) }
        if sources[source] == nil && sources.count >= keep { Self.prune(&sources, windowStart: windowStart, now: now, keep: keep) }
        if users[user] == nil && users.count >= keep { Self.prune(&users, windowStart: windowStart, keep: keep) }
        pairs[pair, default: Entry()].inFlight += 1
        sources[source, default: Entry()].inFlight += 1
        users[user, default: UserEntry()].inFlight += 1
        return current
    }

    /// Counts a failed login (finishing an admitted attempt, if any); returns the status after it.
    @discardableResult
    public mutating func recordFailure(user: String, source: String, now: ContinuousClock.Instant) -> Status {
        finish(user: user, source: source)
        let windowStart = now.advanced(by: .zero - policy.window)
        let keep = maximumEntries / 3
        let pair = Pair(user: user, source: source)
        if pairs[pair] == nil && pairs.count >= keep { Self.prune(&pairs, windowStart: windowStart, now: now, keep: keep) }
        Self.fail(&pairs[pair, default: Entry()], limit: policy.failures, lockFor: policy.duration, windowStart: windowStart, now: now)
        if sources[source] == nil && sources.count >= keep { Self.prune(&sources, windowStart: windowStart, now: now, keep: keep) }
        Self.fail(
            &sources[source, default: Entry()], limit: policy.sourceFailures, lockFor: policy.duration, windowStart: windowStart, now: now)
        if users[user] == nil && users.count >= keep { Self.prune(&users, windowStart: windowStart, keep: keep) }
        var entry = users[user] ?? UserEntry()
        entry.failures.removeAll { $0.time < windowStart }
        // Past this many the delay is at its longest whatever the policy: older ones can go.
        let cap = max(1, policy.failures) + 32
        if entry.failures.count >= cap { entry.failures.removeFirst(entry.failures.count - cap + 1) }
        entry.failures.append((now, source))
        users[user] = entry
        return status(user: user, source: source, now: now)
    }

    /// Finishes an attempt that ended without a verdict (PAM broken, gateway busy).
    public mutating func recordAbandoned(user: String, source: String) {
        finish(user: user, source: source)
    }

    /// Finishes an admitted attempt and forgets the failures of this user at this source (in the
    /// pair and in the user's delay); the source's count and the user's failures elsewhere stay.
    public mutating func recordSuccess(user: String, source: String) {
        finish(user: user, source: source)
        let pair = Pair(user: user, source: source)
        if let entry = pairs[pair], entry.lockedUntil == nil {
            if entry.inFlight == 0 { pairs[pair] = nil } else { pairs[pair]?.failures.removeAll() }
        }
        if var entry = users[user] {
            entry.failures.removeAll { $0.source == source }
            users[user] = entry.failures.isEmpty && entry.inFlight == 0 ? nil : entry
        }
    }

    /// Number of pairs, sources and users tracked (for tests and metrics).
    public var trackedCount: Int { pairs.count + sources.count + users.count }

    private mutating func finish(user: String, source: String) {
        let pair = Pair(user: user, source: source)
        if let count = pairs[pair]?.inFlight, count > 0 { pairs[pair]?.inFlight = count - 1 }
        if let count = sources[source]?.inFlight, count > 0 { sources[source]?.inFlight = count - 1 }
        if let count = users[user]?.inFlight, count > 0 { users[user]?.inFlight = count - 1 }
    }

    private static func fail(
        _ entry: inout Entry, limit: Int, lockFor duration: Duration, windowStart: ContinuousClock.Instant,
        now: ContinuousClock.Instant
    ) {
        if let until = entry.lockedUntil, until <= now { entry.lockedUntil = nil }
        entry.failures.removeAll { $0 < windowStart }
        entry.failures.append(now)
        if entry.failures.count >= limit {
            entry.lockedUntil = now.advanced(by: duration)
            entry.failures.removeAll()
        }
    }

    /// Drops entries with no recent failures, no lock and nothing in flight; if still too many,
    /// drops unlocked idle entries down to three quarters of `keep` (so that a full table is not
    /// searched again at every new key).
    private static func prune<Key: Hashable>(
        _ table: inout [Key: Entry], windowStart: ContinuousClock.Instant, now: ContinuousClock.Instant, keep: Int
    ) {
        table = table.filter { _, entry in
            (entry.lockedUntil.map { $0 > now } ?? false) || entry.failures.contains { $0 >= windowStart } || entry.inFlight > 0
        }
        if table.count >= keep {
            let idle = table.filter { ($0.value.lockedUntil.map { $0 <= now } ?? true) && $0.value.inFlight == 0 }.keys
            for key in idle.prefix(table.count - keep * 3 / 4) { table[key] = nil }
        }
    }

    private static func prune(_ table: inout [String: UserEntry], windowStart: ContinuousClock.Instant, keep: Int) {
        table = table.filter { _, entry in entry.inFlight > 0 || entry.failures.contains { $0.time >= windowStart } }
        if table.count >= keep {
            let idle = table.filter { $0.value.inFlight == 0 }.keys
            for key in idle.prefix(table.count - keep * 3 / 4) { table[key] = nil }
        }
    }
}
