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
        pthread_cond_init(condition, nil)
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

    /// Waits for a signal until `deadline` (wall clock, as `NSCondition`); false once it has passed.
    func wait(until deadline: Date) -> Bool {
        let seconds = deadline.timeIntervalSince1970
        guard seconds.isFinite, seconds > 0 else { return false }
        let whole = seconds.rounded(.down)
        var time = timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }

    func signal() {
        pthread_cond_signal(condition)
    }

    func broadcast() {
        pthread_cond_broadcast(condition)
    }
}
