import BreakGlassAuditFormat
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A lock with a condition, like `NSCondition`, whose lock spins a moment before it sleeps (glibc's
/// adaptive mutex). The audit queue's lock is held for about a microsecond at a time by callers on
/// every core; sleeping and waking for each collision costs several times that.
final class SpinningCondition: @unchecked Sendable {
    // @unchecked: the pthread objects are made for sharing between threads; they live at fixed
    // addresses from `init` to `deinit`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
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

    // The calls below cannot fail for a mutex of this type that the caller holds (or, for `lock`,
    // does not hold): their results carry nothing to act on.

    func lock() {
        pthread_mutex_lock(mutex)
    }

    func unlock() {
        pthread_mutex_unlock(mutex)
    }

    /// Waits for a signal (the lock held, released while waiting).
    func wait() {
        pthread_cond_wait(condition, mutex)
    }

    /// A point `seconds` from now on the clock of `wait(until:)`.
    static func deadline(after seconds: TimeInterval) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let clamped = seconds.isFinite ? min(max(seconds, 0), 86_400 * 365) : 0
        let whole = clamped.rounded(.down)
        var deadline = timespec(tv_sec: now.tv_sec + Int(whole), tv_nsec: now.tv_nsec + Int((clamped - whole) * 1e9))
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return deadline
    }

    /// Waits for a signal until `deadline` (from `deadline(after:)`); false once it has passed (or
    /// the wait failed, so that callers waiting in a loop do not spin).
    func wait(until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }

    func signal() {
        pthread_cond_signal(condition)
    }
}
