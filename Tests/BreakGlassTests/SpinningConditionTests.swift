import Foundation
import Testing

@testable import BreakGlassAuditFormat
@testable import BreakGlassAuditLog

/// The audit writer's lock and condition: timed waits end at their deadline (monotonic clock), and a
/// signal from another thread ends a wait early.
@Suite struct SpinningConditionTests {
    /// A flag the test's threads share under the condition's lock.
    final class Flag: @unchecked Sendable {
        var raised = false
    }

    @Test func aTimedWaitEndsAtItsDeadline() {
        let condition = SpinningCondition()
        let started = ContinuousClock.now
        condition.lock()
        let deadline = SpinningCondition.deadline(after: 0.1)
        var wakeUps = 0
        // Woken without a signal only spuriously; the wait ends with false at the deadline.
        while condition.wait(until: deadline) { wakeUps += 1 }
        condition.unlock()
        #expect(started.duration(to: .now) >= .milliseconds(100))
        #expect(wakeUps < 100)
        // A deadline in the past, or no deadline at all, does not wait.
        condition.lock()
        #expect(!condition.wait(until: SpinningCondition.deadline(after: -5)))
        #expect(!condition.wait(until: SpinningCondition.deadline(after: .nan)))
        condition.unlock()
    }

    @Test func aSignalEndsAWaitEarly() {
        let condition = SpinningCondition()
        let flag = Flag()
        let started = ContinuousClock.now
        let signaller = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            condition.lock()
            flag.raised = true
            condition.signal()
            condition.unlock()
        }
        signaller.start()
        condition.lock()
        let deadline = SpinningCondition.deadline(after: 10)
        while !flag.raised, condition.wait(until: deadline) {}
        let raised = flag.raised
        condition.unlock()
        #expect(raised)
        #expect(started.duration(to: .now) < .seconds(5))
    }
}
