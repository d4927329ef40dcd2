import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A value guarded by a lock with a condition, like `Mutex` with `NSCondition`'s wait, whose lock
/// spins a moment before it sleeps (glibc's adaptive mutex). The audit queue's lock is held for about
/// a microsecond at a time by callers on every core; sleeping and waking for each collision costs
/// several times that.
///
/// Invariant: `state` is only touched inside `withLock` and `wait`, that is, by the one thread that
/// holds the lock; `wait` gives the lock up only inside `pthread_cond_wait`, between two runs of its
/// body. `State` is `Sendable`, so what a body hands out of the lock may go to any thread.
final class SpinningCondition<State: Sendable>: @unchecked Sendable {
    // @unchecked: `state` is guarded as the invariant says; the pthread objects are made for sharing
    // between threads and live at fixed addresses from `init` to `deinit`.
    private var state: State
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    /// What the body of `wait` decided.
    enum Turn<Result> {
        /// Done: `wait` returns this.
        case done(Result)
        /// Wait for a signal, at most this long (nil: as long as it takes), then run the body again.
        case wait(Duration?)
    }

    init(_ state: State) {
        self.state = state
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        #if canImport(Glibc)
            pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        #endif
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        // Timed waits run on the monotonic clock: a wall clock set back cannot stretch them.
        var conditionAttributes = pthread_condattr_t()
        pthread_condattr_init(&conditionAttributes)
        pthread_condattr_setclock(&conditionAttributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &conditionAttributes)
        pthread_condattr_destroy(&conditionAttributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    // The pthread calls below cannot fail for a mutex of this type that the caller holds (or, for
    // `lock`, does not hold): their results carry nothing to act on.

    /// Runs `body` with the state, holding the lock.
    func withLock<Result, Failure: Error>(_ body: (inout State) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Runs `body` with the state, holding the lock, until it is done; each time it asks to wait, the
    /// lock is given up until a `signal` (or its time is up, or the wait wakes spuriously), so the body
    /// must look at the state afresh every time it runs.
    func wait<Result>(_ body: (inout State) -> Turn<Result>) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            switch body(&state) {
            case .done(let result):
                return result
            case .wait(nil):
                pthread_cond_wait(condition, mutex)
            case .wait(let limit?):
                var deadline = Self.deadline(after: limit)
                _ = pthread_cond_timedwait(condition, mutex, &deadline)
            }
        }
    }

    /// Wakes the thread in `wait`, if one waits. Callers may signal with or without the lock: the body
    /// looks at the state under the lock before every wait, so a change made under the lock is never
    /// missed.
    func signal() {
        pthread_cond_signal(condition)
    }

    /// The point `limit` from now on the monotonic clock; no wait is longer than a year, or negative.
    static func deadline(after limit: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let clamped = min(max(limit, .zero), .seconds(86_400 * 365))
        let (seconds, attoseconds) = clamped.components
        var deadline = timespec(tv_sec: now.tv_sec + Int(seconds), tv_nsec: now.tv_nsec + Int(attoseconds / 1_000_000_000))
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return deadline
    }
}
