import BreakGlassProxy
import NIOCore
import Testing

/// `ClientDeadlines` driven with plain values: every state and the deadline it keeps.
@Suite struct ClientDeadlinesTests {
    static let settings = ClientDeadlines.Settings(
        headTimeout: .seconds(10), idleTimeout: .seconds(30), bodyMinRate: 1000, bodyGrace: .seconds(5),
        tunnelIdleTimeout: .seconds(600))

    static func at(_ seconds: Double) -> NIODeadline {
        .uptimeNanoseconds(UInt64(1_000_000_000 + seconds * 1_000_000_000))
    }

    @Test func firstHeadIsDueFromTheConnectionsStart() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        #expect(deadlines.expiry(at: Self.at(9.9)) == nil)
        deadlines.bytesRead(10, now: Self.at(9))
        #expect(deadlines.expiry(at: Self.at(10.1)) == .head, "bytes do not move the first head's deadline")
        deadlines.headReceived(now: Self.at(9.5))
        #expect(deadlines.expiry(at: Self.at(10.1)) == nil)
    }

    @Test func laterHeadIsDueFromItsFirstByteAndIdleBeforeIt() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(1))
        deadlines.requestEnded(now: Self.at(1))
        deadlines.answerStarted()
        #expect(deadlines.expiry(at: Self.at(100)) == nil, "an awaited answer has no deadline here")
        deadlines.answerFinished(now: Self.at(2))
        #expect(deadlines.expiry(at: Self.at(31.9)) == nil)
        #expect(deadlines.expiry(at: Self.at(32.1)) == .idle)
        deadlines.bytesRead(5, now: Self.at(20))
        #expect(deadlines.expiry(at: Self.at(29.9)) == nil)
        #expect(deadlines.expiry(at: Self.at(30.1)) == .head)
    }

    @Test func bodyMustKeepTheMinimumRateAfterTheGrace() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.answerStarted()
        #expect(deadlines.expiry(at: Self.at(4.9)) == nil, "the grace period")
        deadlines.bytesRead(4000, now: Self.at(8))
        #expect(deadlines.expiry(at: Self.at(8.9)) == nil, "4000 bytes owe 4 s at 1000 B/s after the grace")
        #expect(deadlines.expiry(at: Self.at(9.1)) == .body)
    }

    @Test func heldReadsStopTheClientsClock() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.readsHeld(now: Self.at(1))
        #expect(deadlines.expiry(at: Self.at(100)) == nil, "the client cannot send while the gateway holds reads")
        deadlines.readsResumed(now: Self.at(100))
        #expect(deadlines.expiry(at: Self.at(104)) == nil, "1 s before the hold and 4 s after it: still in the grace")
        #expect(deadlines.expiry(at: Self.at(106)) == .body)
    }

    @Test func bodyGapLongerThanIdleIsTooSlowEvenWithoutARate() {
        var settings = Self.settings
        settings.bodyMinRate = 0
        var deadlines = ClientDeadlines(settings: settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.bytesRead(1, now: Self.at(10))
        #expect(deadlines.expiry(at: Self.at(39)) == nil)
        #expect(deadlines.expiry(at: Self.at(41)) == .body)
    }

    /// A streaming answer the client does not read is cut after the idle timeout; a quiet one
    /// (the upstream sends nothing for a while) is not the client's doing and is left alone.
    @Test func aStreamingAnswerMustBeRead() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.requestEnded(now: Self.at(0))
        deadlines.answerStarted()
        deadlines.answerStreaming(now: Self.at(1))
        deadlines.bytesWritten(now: Self.at(20))
        #expect(deadlines.expiry(at: Self.at(500)) == nil, "a quiet upstream")
        deadlines.writabilityChanged(writable: false, now: Self.at(500))
        #expect(deadlines.expiry(at: Self.at(529)) == nil)
        #expect(deadlines.expiry(at: Self.at(531)) == .answer)
        deadlines.writabilityChanged(writable: true, now: Self.at(531))
        #expect(deadlines.expiry(at: Self.at(600)) == nil)
    }

    /// A body at the highest rate the policy allows, for hours: the rate check saturates instead of
    /// overflowing (which would stop the process).
    @Test func aLongFastBodyDoesNotOverflowTheRateCheck() {
        var settings = Self.settings
        settings.bodyMinRate = 1_000_000_000
        var deadlines = ClientDeadlines(settings: settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.bytesRead(Int.max / 2, now: Self.at(100_000))
        #expect(deadlines.expiry(at: Self.at(100_000)) == nil)
    }

    @Test func tunnelKeepsItsOwnIdleDeadline() {
        var deadlines = ClientDeadlines(settings: Self.settings, now: Self.at(0))
        deadlines.headReceived(now: Self.at(0))
        deadlines.requestEnded(now: Self.at(0))
        deadlines.tunnelStarted(now: Self.at(1))
        deadlines.bytesWritten(now: Self.at(300))
        #expect(deadlines.expiry(at: Self.at(899)) == nil)
        deadlines.bytesRead(1, now: Self.at(800))
        #expect(deadlines.expiry(at: Self.at(1399)) == nil)
        #expect(deadlines.expiry(at: Self.at(1401)) == .tunnel)
    }

    @Test func checkIntervalFollowsTheShortestLimit() {
        #expect(Self.settings.checkInterval == .seconds(1))
        var quick = Self.settings
        quick.headTimeout = .milliseconds(400)
        #expect(quick.checkInterval == .milliseconds(100))
    }
}
