import Testing

@testable import BreakGlassGateway

/// The sessions file's rewrite rule, driven with plain values: one writer at a time, requests made
/// during a rewrite share the next one, and a waiter is released only by a rewrite that began after
/// its request.
@Suite struct SessionRewritesTests {
    @Test func theFirstRequestStartsAWriterAndLaterOnesJoinIt() {
        var rewrites = SessionRewrites<Int>()
        let first = rewrites.request(waiter: 1)
        let second = rewrites.request()
        let third = rewrites.request(waiter: 2)
        #expect(first && !second && !third)
        #expect(rewrites.writing)
    }

    @Test func aWaiterIsReleasedByARewriteThatBeganAfterItsRequest() {
        var rewrites = SessionRewrites<String>()
        let started = rewrites.request(waiter: "before")
        #expect(started)
        let first = rewrites.begin()
        // Asked while the first rewrite runs: its changes may not be in that rewrite.
        let joined = rewrites.request(waiter: "during")
        #expect(!joined)
        let one = rewrites.finished(first)
        #expect(one.done == ["before"])
        #expect(one.again)
        let second = rewrites.begin()
        let two = rewrites.finished(second)
        #expect(two.done == ["during"])
        #expect(!two.again)
        #expect(!rewrites.writing)
    }

    @Test func requestsDuringARewriteShareTheNextOne() {
        var rewrites = SessionRewrites<Int>()
        let started = rewrites.request()
        #expect(started)
        let first = rewrites.begin()
        for waiter in 1...5 {
            let joined = rewrites.request(waiter: waiter)
            #expect(!joined)
        }
        let after = rewrites.finished(first)
        #expect(after.again)
        let next = rewrites.finished(rewrites.begin())
        #expect(next.done == [1, 2, 3, 4, 5])
        #expect(!next.again)
        // Idle again: the next request starts a writer.
        let again = rewrites.request()
        #expect(again)
    }
}
