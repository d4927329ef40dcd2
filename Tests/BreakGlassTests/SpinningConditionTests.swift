import Foundation
import Testing

@testable import BreakGlassAuditLog

/// The audit writer's guarded state: only one thread at a time runs a body with it; `wait` runs its
/// body again after a signal from another thread or at its time limit, and never misses a change made
/// under the lock.
@Suite struct SpinningConditionTests {
    @Test func bodiesRunOneAtATime() async {
        let condition = SpinningCondition(0)
        let threads = 8
        let rounds = 20_000
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<threads {
                group.addTask {
                    for _ in 0..<rounds {
                        // Not atomic on its own: a lost update would show in the total.
                        condition.withLock { value in
                            let read = value
                            value = read + 1
                        }
                    }
                }
            }
        }
        #expect(condition.withLock { $0 } == threads * rounds)
    }

    @Test func aTimedWaitEndsAtItsLimitAndTheBodyDecides() {
        let condition = SpinningCondition(0)
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(100)
        // The body asks to wait until the deadline (the rest of it, each time it runs).
        let runs = condition.wait { runs -> SpinningCondition<Int>.Turn<Int> in
            runs += 1
            let now = ContinuousClock.now
            return now < deadline ? .wait(now.duration(to: deadline)) : .done(runs)
        }
        #expect(started.duration(to: .now) >= .milliseconds(100))
        #expect(runs >= 2 && runs < 100, "woken without a signal only at the limit (or spuriously)")
        // A limit of zero or less does not wait.
        let quick = ContinuousClock.now
        var asked = 0
        condition.wait { _ -> SpinningCondition<Int>.Turn<Void> in
            asked += 1
            return asked < 3 ? .wait(asked == 1 ? .zero : .seconds(-5)) : .done(())
        }
        #expect(quick.duration(to: .now) < .seconds(1))
    }

    @Test func aSignalEndsAnUntimedWait() {
        let condition = SpinningCondition(false)
        let started = ContinuousClock.now
        let signaller = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            condition.withLock { $0 = true }
            // After the lock is given back: the waiting body sees the change when it wakes.
            condition.signal()
        }
        signaller.start()
        let raised = condition.wait { raised -> SpinningCondition<Bool>.Turn<Bool> in
            raised ? .done(true) : .wait(nil)
        }
        #expect(raised)
        #expect(started.duration(to: .now) < .seconds(5))
    }

    @Test func noChangeIsMissedBetweenTheBodyAndTheWait() {
        // A producer changes the state under the lock and signals after; the consumer waits without
        // a limit for each value in turn. A change made between its body and its wait would be lost
        // (and the test would hang) if `wait` gave up the lock anywhere but inside the wait itself.
        let condition = SpinningCondition(0)
        let count = 2_000
        let producer = Thread {
            for _ in 0..<count {
                condition.withLock { $0 += 1 }
                condition.signal()
            }
        }
        producer.start()
        var seen = 0
        while seen < count {
            seen = condition.wait { value -> SpinningCondition<Int>.Turn<Int> in
                value > seen ? .done(value) : .wait(nil)
            }
        }
        #expect(seen == count)
    }

    @Test func deadlinesAreClamped() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let past = SpinningCondition<Int>.deadline(after: .seconds(-5))
        #expect(past.tv_sec >= now.tv_sec && past.tv_sec <= now.tv_sec + 1)
        let far = SpinningCondition<Int>.deadline(after: .seconds(1_000_000_000))
        #expect(far.tv_sec <= now.tv_sec + 86_400 * 365 + 1)
        let half = SpinningCondition<Int>.deadline(after: .milliseconds(1_500))
        #expect(half.tv_nsec < 1_000_000_000)
        #expect(half.tv_sec >= now.tv_sec + 1 && half.tv_sec <= now.tv_sec + 3)
    }
}
