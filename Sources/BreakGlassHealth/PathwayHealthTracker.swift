import Foundation

/// One pathway's health across rounds, with hysteresis: a failed round makes a healthy pathway
/// `degraded`, `failAfter` failures in a row make it `failing`, and `recoverAfter` passes in a row
/// make it `healthy` again. The first pass of a new pathway makes it healthy at once.
struct PathwayHealthTracker: Sendable {
    /// A state change to report (alert, audit, log).
    struct Transition: Sendable, Equatable {
        var from: HealthState
        var to: HealthState
    }

    private(set) var state = HealthState.unknown
    private(set) var consecutiveFailures = 0
    private(set) var consecutiveSuccesses = 0
    private(set) var lastSuccess: Date?
    private(set) var lastFailure: ProbeFailure?
    private(set) var lastResult: PathwayProbeResult?

    let failAfter: Int
    let recoverAfter: Int

    init(failAfter: Int, recoverAfter: Int) {
        self.failAfter = max(1, failAfter)
        self.recoverAfter = max(1, recoverAfter)
    }

    /// Takes one round's result; returns the state change it caused, if any.
    mutating func record(_ result: PathwayProbeResult) -> Transition? {
        let before = state
        lastResult = result
        if let failure = result.failure {
            consecutiveFailures += 1
            consecutiveSuccesses = 0
            lastFailure = failure
            state = consecutiveFailures >= failAfter ? .failing : (state == .failing ? .failing : .degraded)
        } else {
            consecutiveSuccesses += 1
            consecutiveFailures = 0
            lastSuccess = result.finishedAt
            if state == .unknown || consecutiveSuccesses >= recoverAfter { state = .healthy }
        }
        return state == before ? nil : Transition(from: before, to: state)
    }
}
