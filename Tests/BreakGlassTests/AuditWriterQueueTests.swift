import BreakGlassAuditFormat
import BreakGlassCore
import Testing

@testable import BreakGlassAuditLog

/// `AuditWriterQueue` with plain values: events are numbers (awaited or not), checkpoint waiters and
/// closers are names, and time is what each call says it is. Steps are compared as short texts.
@Suite struct AuditWriterQueueTests {
    struct Item: AuditQueueEntry, Equatable {
        var id: Int
        var isAwaited: Bool
    }

    typealias Queue = AuditWriterQueue<Item, String, String>

    static let start = ContinuousClock.now

    /// `ms` milliseconds after `start`.
    static func at(_ ms: Int) -> ContinuousClock.Instant { start + .milliseconds(ms) }

    static func queue(
        maximumBatch: Int = 100, submitDelay: Duration = .milliseconds(2), lingerBatch: Int = 8, maximumPending: Int = 1000,
        durable: Int = 0, checkpointSize: Int = 0
    ) -> Queue {
        var settings = Queue.Settings(maximumBatch: maximumBatch, submitDelay: submitDelay, checkpointInterval: .seconds(1))
        settings.lingerBatch = lingerBatch
        return Queue(settings: settings, maximumPending: maximumPending, durableSize: durable, checkpointSize: checkpointSize, now: start)
    }

    /// A step as text: "write 0 1 2", "wait", "wait +2", "publish a b", "answer a (note)", "finish".
    static func text(_ step: Queue.Step) -> String {
        switch step {
        case .wait(nil): "wait"
        case .wait(let until?): "wait +\(Int(start.duration(to: until) / .microseconds(1)) / 1000)"
        case .write(let batch): (["write"] + batch.map { "\($0.id)\($0.isAwaited ? "" : "s")" }).joined(separator: " ")
        case .publish(let waiters): (["publish"] + waiters).joined(separator: " ")
        case .answer(let waiters, let note): (["answer"] + waiters + ["(\(note))"]).joined(separator: " ")
        case .finish: "finish"
        }
    }

    /// A queue change as text: "wake", "queued" (no signal), or the refusal.
    static func text(_ admission: Queue.Admission<String>) -> String {
        switch admission {
        case .queued(let wake): wake ? "wake" : "queued"
        case .refused(let reason): "refused: \(reason)"
        }
    }

    static func text(_ admission: Queue.Admission<AuditLogError>) -> String {
        switch admission {
        case .queued(let wake): wake ? "wake" : "queued"
        case .refused(let error): "refused: \(error.message)"
        }
    }

    static func text(_ closing: Queue.Closing) -> String {
        switch closing {
        case .queued(let wake): wake ? "wake" : "queued"
        case .closed: "closed"
        }
    }
}

/// Plain-value drivers: an awaited event (`append`), a submitted one (`submit`), numbered by the queue.
extension AuditWriterQueue where Entry == AuditWriterQueueTests.Item, Waiter == String, Closer == String {
    mutating func append(_ kind: AuditEvent.Kind = .grantIssued, reserved: Bool = false) -> String {
        AuditWriterQueueTests.text(enqueue(kind, reserved: reserved) { AuditWriterQueueTests.Item(id: $0, isAwaited: true) })
    }

    mutating func submit(_ kind: AuditEvent.Kind = .request) -> String {
        AuditWriterQueueTests.text(enqueue(kind, reserved: false) { AuditWriterQueueTests.Item(id: $0, isAwaited: false) })
    }

    mutating func step(at ms: Int = 0) -> String {
        AuditWriterQueueTests.text(next(now: AuditWriterQueueTests.at(ms)))
    }

    mutating func checkpoint(_ name: String) -> String {
        AuditWriterQueueTests.text(requestCheckpoint(name))
    }

    mutating func closing(_ name: String) -> String {
        AuditWriterQueueTests.text(close(name))
    }

    /// The writer wrote every record it was given and signed nothing.
    mutating func wrote(_ size: Int) {
        durable(size)
    }
}

extension AuditWriterQueueTests {
    @Test func anIdleWriterWakesForTheFirstEventAndWritesItAtOnce() {
        var queue = Self.queue()
        #expect(queue.step() == "wait")
        #expect(queue.phase == .idle(until: nil))
        #expect(queue.append() == "wake")
        #expect(queue.step() == "write 0")
        #expect(queue.phase == .writing)
    }

    @Test func eventsQueuedWhileTheWriterWorksNeverSignalAndGoOutAsOneBatch() {
        var queue = Self.queue()
        #expect(queue.append() == "queued", "starting: the writer looks before it waits")
        #expect(queue.step() == "write 0")
        for _ in 1...3 { #expect(queue.append() == "queued") }
        #expect(queue.submit() == "queued")
        queue.wrote(1)
        #expect(queue.step() == "write 1 2 3 4s")
        #expect(queue.entries.isEmpty && queue.awaited == 0)
    }

    @Test func aBatchHoldsAtMostMaximumBatchAndTheRestFollows() {
        var queue = Self.queue(maximumBatch: 4)
        for _ in 0..<6 { _ = queue.append() }
        _ = queue.submit()
        #expect(queue.step() == "write 0 1 2 3")
        #expect(queue.awaited == 2)
        queue.wrote(4)
        // The last batch held 4: three quarters of that is 3, and 3 are queued, so no gathering.
        #expect(queue.step() == "write 4 5 6s")
    }

    @Test func groupCommitGathersTheCallersOfTheLastBatch() {
        var queue = Self.queue()
        for _ in 0..<8 { _ = queue.append() }
        #expect(queue.step() == "write 0 1 2 3 4 5 6 7")
        queue.wrote(8)
        #expect(queue.append() == "queued")
        #expect(queue.append() == "queued")
        #expect(queue.step(at: 10) == "wait +11", "two of 8 are back: wait up to 1 ms for 6")
        #expect(queue.phase == .gathering(target: 6, until: Self.at(11)))
        for _ in 0..<3 { #expect(queue.append() == "queued") }
        #expect(queue.step(at: 10) == "wait +11", "woken early (spuriously): still 5 of 6")
        #expect(queue.append() == "wake", "the sixth wakes it")
        #expect(queue.step(at: 10) == "write 8 9 10 11 12 13")
    }

    @Test func gatheringEndsAtItsDeadlineWithWhatCame() {
        var queue = Self.queue()
        for _ in 0..<8 { _ = queue.append() }
        _ = queue.step()
        queue.wrote(8)
        _ = queue.append()
        #expect(queue.step(at: 5) == "wait +6")
        #expect(queue.step(at: 6) == "write 8")
        // The last batch was 1: nothing to gather for next time.
        queue.wrote(9)
        _ = queue.append()
        #expect(queue.step(at: 7) == "write 9")
    }

    @Test func submittedEventsLingerForCompany() {
        var queue = Self.queue(submitDelay: .milliseconds(2))
        #expect(queue.step() == "wait")
        #expect(queue.submit() == "wake")
        #expect(queue.step(at: 1) == "wait +3")
        #expect(queue.submit() == "queued", "lingering: one more submitted event does not wake it")
        #expect(queue.step(at: 2) == "wait +3")
        #expect(queue.step(at: 3) == "write 0s 1s")
    }

    @Test func aWaitingCallerEndsTheLingerAndIsWrittenWithTheRest() {
        var queue = Self.queue()
        _ = queue.submit()
        #expect(queue.step() == "wait +2")
        #expect(queue.append() == "wake")
        #expect(queue.step(at: 1) == "write 0s 1")
    }

    @Test func aFullLingerBatchEndsTheLinger() {
        var queue = Self.queue(lingerBatch: 4)
        _ = queue.submit()
        #expect(queue.step() == "wait +2")
        #expect(queue.submit() == "queued")
        #expect(queue.submit() == "queued")
        #expect(queue.submit() == "wake")
        #expect(queue.step(at: 1) == "write 0s 1s 2s 3s")
    }

    @Test func withoutASubmitDelayNothingLingers() {
        var queue = Self.queue(submitDelay: .zero)
        _ = queue.submit()
        #expect(queue.step() == "write 0s")
    }

    @Test func aCheckpointRequestEndsTheLingerAndIsAnsweredAfterTheBatch() {
        var queue = Self.queue()
        _ = queue.submit()
        #expect(queue.step() == "wait +2")
        #expect(queue.checkpoint("a") == "wake")
        #expect(queue.step(at: 1) == "write 0s")
        queue.wrote(1)
        #expect(queue.step(at: 1) == "publish a")
        #expect(queue.phase == .publishing)
    }

    @Test func aCheckpointRequestWithNothingNewIsAnsweredWithTheLastNote() {
        var queue = Self.queue(checkpointSize: 0)
        #expect(queue.checkpoint("a") == "queued")
        #expect(queue.step() == "publish a", "no note signed by this writer yet: sign one")
        queue.published(size: 0, note: "N0", at: Self.at(0))
        #expect(queue.checkpoint("b") == "queued")
        #expect(queue.checkpoint("c") == "queued")
        #expect(queue.step() == "answer b c (N0)")
        #expect(queue.step() == "wait")
        #expect(queue.append() == "wake")
        #expect(queue.checkpoint("d") == "wake", "still idle: the writer has not looked yet")
        #expect(queue.step() == "write 0")
        queue.wrote(1)
        #expect(queue.step() == "publish d", "a record since: sign anew")
    }

    @Test func waitersArrivingDuringABatchAreAnsweredRightAfterIt() {
        var queue = Self.queue()
        for _ in 0..<3 { _ = queue.append() }
        #expect(queue.step() == "write 0 1 2")
        #expect(queue.checkpoint("a") == "queued")
        #expect(queue.append() == "queued")
        queue.wrote(3)
        // Waiters first, then the queued event (the checkpoint covers the batch just written).
        #expect(queue.step() == "publish a")
        queue.published(size: 3, note: "N3", at: Self.at(0))
        #expect(queue.step() == "wait +1", "one of the last batch's 3 callers is back: gather a moment")
        #expect(queue.step(at: 1) == "write 3")
    }

    @Test func aCheckpointIsDueAnIntervalAfterTheLastOnceRecordsWereWritten() {
        var queue = Self.queue(submitDelay: .zero, checkpointSize: 0)
        #expect(queue.step() == "wait", "nothing written: no checkpoint due")
        _ = queue.append()
        #expect(queue.step() == "write 0")
        queue.wrote(1)
        #expect(queue.step(at: 10) == "wait +1000", "idle until the checkpoint is due")
        #expect(queue.step(at: 1000) == "publish")
        queue.published(size: 1, note: "N1", at: Self.at(1000))
        #expect(queue.step(at: 1000) == "wait")
        // Under steady load the due checkpoint comes right after a batch.
        _ = queue.submit()
        #expect(queue.step(at: 2500) == "write 1s")
        queue.wrote(2)
        _ = queue.submit()
        #expect(queue.step(at: 2500) == "publish")
    }

    @Test func aLogWithoutACheckpointSignsItsFirstAfterAnInterval() {
        var queue = Self.queue(checkpointSize: -1)
        #expect(queue.step() == "wait +1000")
        #expect(queue.step(at: 1000) == "publish")
    }

    @Test func closeWhileIdleSignsTheLastCheckpointAndFinishes() {
        var queue = Self.queue()
        #expect(queue.step() == "wait")
        #expect(queue.closing("c1") == "wake")
        #expect(queue.step() == "publish", "the last checkpoint is always signed")
        #expect(queue.phase == .closing)
        #expect(queue.step() == "finish")
        #expect(queue.closing("c2") == "queued", "finishing: resumed with the first")
        #expect(queue.writerFinished() == ["c1", "c2"])
        #expect(queue.closing("c3") == "closed")
    }

    @Test func closeWhileBusyWritesWhatIsQueuedAndAnswersWaitersWithTheLastCheckpoint() {
        var queue = Self.queue(maximumBatch: 2)
        for _ in 0..<3 { _ = queue.append() }
        #expect(queue.step() == "write 0 1")
        #expect(queue.checkpoint("a") == "queued")
        #expect(queue.closing("c") == "queued", "the writer works: no signal")
        #expect(queue.append() == "refused: the audit log is closing")
        #expect(queue.submit() == "refused: the audit log is closing")
        #expect(queue.checkpoint("b") == "refused: the audit log is closing")
        #expect(queue.accepts(.grantReleased) == false)
        queue.wrote(2)
        #expect(queue.step() == "write 2", "closing: no lingering, no gathering, no checkpoint in between")
        queue.wrote(3)
        #expect(queue.step() == "publish a")
        #expect(queue.step() == "finish")
        #expect(queue.writerFinished() == ["c"])
    }

    @Test func aStoppedLogRefusesEverythingFromThenOn() {
        var queue = Self.queue()
        _ = queue.append()
        _ = queue.submit()
        _ = queue.checkpoint("a")
        let stopped = queue.stop(AuditLogError(.io, "disk gone"))
        #expect(stopped.first)
        #expect(stopped.entries.map(\.id) == [0, 1] && stopped.waiters == ["a"])
        #expect(queue.entries.isEmpty && queue.waiters.isEmpty && queue.awaited == 0)
        let again = queue.stop(AuditLogError(.key, "later"))
        #expect(!again.first && again.failure.message == "disk gone", "the first reason stays")
        #expect(queue.append() == "refused: disk gone")
        #expect(queue.append(.grantReleased, reserved: true) == "refused: disk gone", "even a reserved place")
        #expect(queue.checkpoint("b") == "refused: disk gone")
        #expect(queue.health == .failed("disk gone"))
        #expect(queue.step() == "wait", "nothing to write, nothing to sign")
        #expect(queue.closing("c") == "wake")
        #expect(queue.step() == "finish", "no last checkpoint for a stopped log")
        #expect(queue.writerFinished() == ["c"])
    }

    @Test func numbersAreDealtInOrderAndDealtAgainAfterARefusedRecord() {
        var queue = Self.queue(durable: 10)
        #expect(queue.nextSequence == 10)
        for _ in 0..<3 { _ = queue.append() }
        #expect(queue.step() == "write 10 11 12")
        _ = queue.append()
        _ = queue.append()
        #expect(queue.nextSequence == 15)
        // One record of the batch was dropped (it could not be encoded): 12 records are durable.
        queue.wrote(12)
        #expect(queue.step() == "write 13 14", "queued under 13 and 14; the writer frames them anew")
        #expect(queue.nextSequence == 14, "the numbers after a dropped record are right again")
        #expect(queue.append() == "queued")
        #expect(queue.entries.map(\.id) == [14])
    }

    @Test func theQueueBoundCountsReservationsAndAReservedPlaceIsHonoured() {
        var queue = Self.queue(maximumPending: 2)
        let reserved = queue.reserve(.request)
        #expect(reserved)
        #expect(queue.append() == "queued")
        #expect(queue.append() == "refused: the audit writer is behind (1 events waiting)")
        let again = queue.reserve(.request)
        #expect(!again)
        #expect(queue.append(.request, reserved: true) == "queued")
        queue.cancelReservation()
        #expect(queue.intake.reservations == 0)
    }

    @Test func theReserveAndWarningsShowInHealth() {
        var queue = Self.queue()
        let entered = queue.enterReserve()
        let twice = queue.enterReserve()
        #expect(entered && !twice)
        #expect(queue.append(.grantIssued).hasPrefix("refused: the audit disk is full"))
        #expect(queue.append(.grantReleased) == "queued")
        queue.leaveReserve()
        queue.warn("mirror /m failed")
        #expect(queue.health == .degraded("mirror /m failed"))
    }

    @Test func theWakeRuleSignalsOnlyWhatTheWaitingWriterWaitsFor() {
        // Gathering: only the target (or close) wakes it; a checkpoint request waits for the batch.
        var gathering = Self.queue()
        for _ in 0..<8 { _ = gathering.append() }
        _ = gathering.step()
        gathering.wrote(8)
        _ = gathering.append()
        _ = gathering.step()
        #expect(gathering.checkpoint("a") == "queued")
        #expect(gathering.submit() == "queued")
        #expect(gathering.closing("c") == "wake")
        // Working phases never signal.
        var writing = Self.queue()
        _ = writing.append()
        _ = writing.step()
        #expect(writing.append() == "queued")
        #expect(writing.submit() == "queued")
        #expect(writing.checkpoint("a") == "queued")
        #expect(writing.closing("c") == "queued")
    }
}
