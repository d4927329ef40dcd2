import NIOCore

/// The answer deadline: when the upstream must have begun answering the proxied request in
/// progress, and the one timer of the connection that watches it.
extension ConnectionStateMachine {
    /// The proxied request in progress must get the start of its answer by `deadline`.
    package mutating func awaitAnswer(by deadline: NIODeadline) -> TimerAction {
        answerDeadline = deadline
        if let armed = timerAt, deadline >= armed { return .none }
        timerAt = deadline
        return .arm(deadline)
    }

    /// The start of the proxied answer arrived.
    package mutating func answerBegan() {
        answerDeadline = nil
    }

    /// The timer fired at `now`.
    package mutating func answerTimerFired(now: NIODeadline) -> TimerAction {
        timerAt = nil
        guard let due = answerDeadline else { return .none }
        if due > now {
            timerAt = due
            return .arm(due)
        }
        guard isProxying else { return .none }
        answerDeadline = nil
        return .answerTimedOut
    }

    /// The timer was cancelled (the handler left the pipeline).
    package mutating func timerCancelled() {
        timerAt = nil
    }
}
