import BreakGlassCore
import NIOCore
import NIOHTTP1
import Testing

@testable import BreakGlassProxy

/// `ConnectionStateMachine` with plain values: every state against every event, then the paths
/// that cross states (pipelining, refusals, draining, tunnels, deadlines, reads).
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine

    /// The states by name, each reached through events only.
    enum Named: CaseIterable {
        case idle, receiving, discarding, responding, authorizing, proxying, tunneling, draining
    }

    static let limits = HTTPLimits(maximumHeaderBytes: 1024, maximumHeaderCount: 10, maximumBodyBytes: 8)

    static func head(_ method: HTTPMethod = .GET, _ uri: String = "/v1/grants", _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    static func body(_ text: String) -> HTTPServerRequestPart {
        .body(ByteBuffer(string: text))
    }

    static func machine(_ named: Named) -> Machine {
        var machine = Machine(limits: limits, servesPathways: true)
        switch named {
        case .idle:
            break
        case .receiving:
            _ = machine.received(.head(head(.POST, "/v1/grants", [("Content-Length", "2")])))
        case .discarding:
            _ = machine.received(.head(head(.GET, "/p/web/../x")))
        case .responding:
            _ = machine.received(.head(head()))
            _ = machine.received(.end(nil))
        case .authorizing:
            _ = machine.received(.head(head(.GET, "/p/web/x")))
        case .proxying:
            _ = machine.received(.head(head(.GET, "/p/web/x")))
            machine.exchangeStarted()
        case .tunneling:
            _ = machine.received(.head(head(.CONNECT, "db:5432")))
            #expect(machine.tunnelStarting() == .start)
        case .draining:
            _ = machine.received(.head(head(.GET, "/p/web/x")))
            _ = machine.answering(keepAlive: true, drainFirst: true)
        }
        return machine
    }

    @Test func eachStateIsReachedByEvents() {
        #expect(Self.machine(.idle).state == .idle)
        #expect(Self.machine(.receiving).state == .receiving(Self.head(.POST, "/v1/grants", [("Content-Length", "2")]), ByteBuffer()))
        #expect(Self.machine(.discarding).state == .discarding)
        #expect(Self.machine(.responding).state == .responding)
        #expect(Self.machine(.authorizing).state == .authorizing(Self.head(.GET, "/p/web/x"), []))
        #expect(Self.machine(.proxying).state == .proxying(requestEnded: false))
        #expect(Self.machine(.tunneling).state == .tunneling)
        #expect(Self.machine(.draining).state == .draining)
    }

    // MARK: every state × every part

    @Test(arguments: Named.allCases) func aHeadInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let before = machine.state
        let action = machine.received(.head(Self.head(.GET, "/v1/health")))
        switch named {
        case .idle:
            #expect(action == .begin(.collectBody))
            #expect(machine.state == .receiving(Self.head(.GET, "/v1/health"), ByteBuffer()))
        case .responding, .authorizing, .proxying:
            // A request answered: the next one waits its turn (pipelining).
            #expect(action == .none)
            #expect(machine.waitingParts == 1)
            #expect(machine.state == before)
        case .discarding:
            #expect(action == .none)
            #expect(machine.state == .discarding)
        case .receiving, .tunneling, .draining:
            #expect(action == .close)
        }
    }

    @Test(arguments: Named.allCases) func aBodyPartInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.received(Self.body("ab"))
        switch named {
        case .idle, .responding, .tunneling:
            #expect(action == .close)
        case .receiving:
            #expect(action == .none)
            #expect(machine.state == .receiving(Self.head(.POST, "/v1/grants", [("Content-Length", "2")]), ByteBuffer(string: "ab")))
        case .authorizing:
            #expect(action == .none)
            #expect(machine.state == .authorizing(Self.head(.GET, "/p/web/x"), [Self.body("ab")]))
        case .proxying:
            #expect(action == .forward(Self.body("ab")))
            #expect(machine.state == .proxying(requestEnded: false))
        case .discarding, .draining:
            #expect(action == .none)
        }
    }

    @Test(arguments: Named.allCases) func anEndInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.received(.end(nil))
        switch named {
        case .idle, .responding, .tunneling:
            #expect(action == .close)
        case .receiving:
            #expect(action == .dispatch(Self.head(.POST, "/v1/grants", [("Content-Length", "2")]), ByteBuffer()))
            #expect(machine.state == .responding)
        case .authorizing:
            #expect(action == .none)
            #expect(machine.state == .authorizing(Self.head(.GET, "/p/web/x"), [.end(nil)]))
        case .proxying:
            #expect(action == .forward(.end(nil)))
            #expect(machine.state == .proxying(requestEnded: true))
        case .discarding:
            #expect(action == .none)
        case .draining:
            #expect(action == .drained)
            #expect(machine.state == .idle)
        }
    }

    // MARK: every state × every failure

    @Test(arguments: Named.allCases) func bytesThatAreNotHTTPInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.parserFailed()
        switch named {
        case .idle, .receiving, .authorizing:
            #expect(action == .answer)
            #expect(machine.state == .discarding)
        case .proxying:
            // Part of the request may be upstream already: the exchange decides.
            #expect(action == .failExchange)
            #expect(machine.closesAfterAnswer)
        case .draining:
            #expect(action == .close)
        case .responding, .discarding, .tunneling:
            #expect(action == .none)
            #expect(machine.closesAfterAnswer)
        }
    }

    @Test(arguments: Named.allCases) func aLateHeadInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.timedOut(.head)
        #expect(machine.closesAfterAnswer)
        switch named {
        case .idle:
            #expect(action == .answer)
            #expect(machine.state == .discarding)
        case .responding, .authorizing, .proxying:
            // The answer in progress goes out, then the connection closes.
            #expect(action == .none)
        case .receiving, .discarding, .tunneling, .draining:
            #expect(action == .close)
        }
    }

    @Test(arguments: Named.allCases) func aSlowBodyInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.timedOut(.body)
        switch named {
        case .receiving, .authorizing:
            #expect(action == .answer)
            #expect(machine.state == .discarding)
        case .proxying:
            #expect(action == .failExchange)
        case .idle, .responding, .discarding, .tunneling, .draining:
            #expect(action == .close)
        }
    }

    @Test(arguments: Named.allCases) func shutdownInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.quiesce()
        #expect(machine.closesAfterAnswer)
        switch named {
        case .idle, .draining:
            #expect(action == .close)
        case .receiving, .responding, .authorizing, .proxying, .discarding, .tunneling:
            #expect(action == .none)
        }
        // Whatever answer is written next is the connection's last.
        let result1 = machine.answering(keepAlive: true)
        #expect(result1 == false)
    }

    @Test(arguments: Named.allCases) func theClientLeavingInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let tellExchange = machine.clientClosed()
        #expect(tellExchange == (named == .proxying))
        if named == .authorizing {
            // Its admission, when it arrives, is no longer wanted.
            #expect(machine.state == .discarding)
            #expect(machine.admissionWanted(clientActive: true) == nil)
        }
    }

    @Test(arguments: Named.allCases) func anotherErrorInEachState(_ named: Named) {
        let machine = Self.machine(named)
        // A refused request's answer is being written: closing now could cut it short.
        #expect(machine.otherFailure() == (named == .discarding ? .none : .close))
    }

    @Test(arguments: Named.allCases) func aTunnelStartsOnlyFromAnAdmission(_ named: Named) {
        var machine = Self.machine(named)
        let starts = machine.tunnelStarting() == .start
        #expect(starts == (named == .authorizing || named == .proxying))
        if starts { #expect(machine.isTunneling) }
    }

    /// Shutdown began while a tunnel was being authorized: it does not start (it would outlive
    /// the listener's quiescing), and the request can still be answered.
    @Test(arguments: [Named.authorizing, .proxying]) func noTunnelStartsDuringShutdown(_ named: Named) {
        var machine = Self.machine(named)
        #expect(machine.quiesce() == .none)
        #expect(machine.tunnelStarting() == .shuttingDown)
        #expect(!machine.isTunneling)
        #expect(machine.answering(keepAlive: true) == false)
    }

    // MARK: requests as they begin

    @Test func howRequestsBegin() {
        var machine = Self.machine(.idle)
        #expect(machine.received(.head(Self.head(.CONNECT, "db:5432"))) == .begin(.tunnel(Self.head(.CONNECT, "db:5432"), pathway: "db")))
        machine = Self.machine(.idle)
        #expect(
            machine.received(.head(Self.head(.GET, "/p/web/a?b")))
                == .begin(.proxy(Self.head(.GET, "/p/web/a?b"), ProxyTarget(pathway: "web", path: "/a?b"))))
        // Reads go on for a proxied request without a body, and are held for one with a body.
        let result2 = machine.readRequested()
        #expect(result2)
        machine = Self.machine(.idle)
        _ = machine.received(.head(Self.head(.POST, "/p/web/a", [("Content-Length", "3")])))
        let result3 = machine.readRequested()
        #expect(result3 == false)
        let result4 = machine.releaseReads()
        #expect(result4)
    }

    @Test func refusedBeginningsNameTheProblem() {
        func refusal(_ head: HTTPRequestHead, servesPathways: Bool = true) -> BreakGlassError.Code? {
            var machine = Machine(limits: Self.limits, servesPathways: servesPathways)
            guard case .begin(.refuse(_, let error)) = machine.received(.head(head)) else { return nil }
            #expect(machine.state == .discarding)
            return error.code
        }
        #expect(refusal(Self.head(.CONNECT, "db")) == .invalidRequest)
        #expect(refusal(Self.head(.CONNECT, "db:+443")) == .invalidRequest)
        #expect(refusal(Self.head(.GET, "/p/web/%2e%2e/x")) == .invalidRequest)
        #expect(refusal(Self.head(.POST, "/v1/grants", [("Content-Length", "9")])) == .payloadTooLarge)
        #expect(refusal(Self.head(.GET, "/", (0..<11).map { ("X-\($0)", "v") })) == .headersTooLarge)
        #expect(refusal(Self.head(.GET, "/", [("X", String(repeating: "v", count: 1024))])) == .headersTooLarge)
        #expect(refusal(Self.head(.GET, "/", [("Host", "a"), ("Host", "b")])) != nil)
        // On a listener that serves only an API, /p/ and CONNECT are API requests (the router says 404).
        var apiOnly = Machine(limits: Self.limits, servesPathways: false)
        #expect(apiOnly.received(.head(Self.head(.GET, "/p/web/x"))) == .begin(.collectBody))
    }

    @Test func anAPIBodyIsBoundedAsItArrives() {
        var machine = Self.machine(.receiving)
        #expect(machine.received(Self.body("12345")) == .none)
        guard case .refuse(_, let error) = machine.received(Self.body("6789")) else {
            Issue.record("nine bytes passed a limit of eight")
            return
        }
        #expect(error.code == .payloadTooLarge)
        #expect(machine.state == .discarding)
        #expect(machine.received(.end(nil)) == .none)
    }

    // MARK: pipelining

    @Test func pipelinedRequestsWaitAndReadingStopsUntilTheirTurn() {
        var machine = Self.machine(.responding)
        #expect(machine.received(.head(Self.head(.GET, "/v1/health"))) == .none)
        #expect(machine.received(.end(nil)) == .none)
        #expect(machine.waitingParts == 2)
        let result5 = machine.readRequested()
        #expect(result5 == false)
        #expect(machine.nextWaiting() == nil)
        let result6 = machine.answering(keepAlive: true)
        #expect(result6)
        #expect(machine.nextWaiting() == .begin(.collectBody))
        #expect(machine.nextWaiting() == .dispatch(Self.head(.GET, "/v1/health"), ByteBuffer()))
        // The second request is with the router: nothing more waits, and the held read goes ahead.
        #expect(machine.nextWaiting() == nil)
        #expect(machine.settle() == .proceed(flushExchange: false, read: true))
    }

    @Test func aRequestThatClosesTheConnectionDropsWhatWaits() {
        var machine = Self.machine(.responding)
        _ = machine.received(.head(Self.head(.GET, "/v1/health")))
        let result7 = machine.answering(keepAlive: false)
        #expect(result7 == false)
        #expect(machine.state == .discarding)
        #expect(machine.nextWaiting() == nil)
        // A late head closes what answers nothing more.
        var late = Self.machine(.responding)
        _ = late.received(.head(Self.head()))
        #expect(late.timedOut(.head) == .none)
        #expect(late.waitingParts == 0)
        let result8 = late.answering(keepAlive: true)
        #expect(result8 == false)
    }

    @Test func anIdleConnectionThatMustCloseClosesOnceAnswered() {
        var machine = Self.machine(.responding)
        #expect(machine.quiesce() == .none)
        _ = machine.answering(keepAlive: true)
        #expect(machine.settle() == .proceed(flushExchange: false, read: false))
        var idle = Self.machine(.idle)
        #expect(idle.quiesce() == .close)
        #expect(idle.settle() == .close)
    }

    // MARK: admissions and refusals

    @Test func anAdmissionIsWantedOnlyWhileItsRequestWaits() {
        var machine = Self.machine(.authorizing)
        _ = machine.received(Self.body("x"))
        #expect(machine.admissionWanted(clientActive: false) == nil)
        let wanted = machine.admissionWanted(clientActive: true)
        #expect(wanted?.head == Self.head(.GET, "/p/web/x"))
        #expect(wanted?.early == [Self.body("x")])
        machine.exchangeStarted()
        #expect(machine.state == .proxying(requestEnded: false))
        #expect(machine.admissionWanted(clientActive: true) == nil)

        var ended = Self.machine(.authorizing)
        _ = ended.received(.end(nil))
        ended.exchangeStarted()
        #expect(ended.state == .proxying(requestEnded: true))
    }

    @Test func aRefusalKeepsTheConnectionOnlyWhenNothingIsLeftUnread() {
        func refusal(_ head: HTTPRequestHead, ended: Bool) -> Machine.Refusal? {
            var machine = Machine(limits: Self.limits, servesPathways: true)
            _ = machine.received(.head(head))
            if ended { _ = machine.received(.end(nil)) }
            return machine.refusal()
        }
        let get = Self.head(.GET, "/p/web/x")
        #expect(refusal(get, ended: true) == .init(version: .http1_1, keepAlive: true, drainFirst: false))
        #expect(refusal(get, ended: false) == .init(version: .http1_1, keepAlive: true, drainFirst: true))
        #expect(refusal(Self.head(.POST, "/p/web/x", [("Content-Length", "3")]), ended: false)?.keepAlive == false)
        #expect(refusal(Self.head(.CONNECT, "db:1"), ended: true)?.keepAlive == false)
        var old = get
        old.version = .http1_0
        #expect(refusal(old, ended: true)?.keepAlive == false)
        // Answered already (a deadline): nothing more is written.
        var answered = Self.machine(.authorizing)
        _ = answered.timedOut(.body)
        #expect(answered.refusal() == nil)
    }

    @Test func aDrainedRequestLetsTheNextOneIn() {
        var machine = Self.machine(.authorizing)
        let refusal = machine.refusal()
        let result9 = machine.answering(keepAlive: true, drainFirst: refusal?.drainFirst ?? false)
        #expect(result9)
        #expect(machine.state == .draining)
        #expect(machine.received(Self.body("ignored")) == .none)
        #expect(machine.received(.end(nil)) == .drained)
        #expect(machine.received(.head(Self.head())) == .begin(.collectBody))
    }

    // MARK: the answer deadline

    @Test func oneTimerServesTheConnectionsAnswerDeadlines() {
        var machine = Self.machine(.proxying)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(machine.awaitAnswer(by: now + .seconds(5)) == .arm(now + .seconds(5)))
        // A later deadline moves only the target; an earlier one rearms.
        #expect(machine.awaitAnswer(by: now + .seconds(9)) == .none)
        #expect(machine.answerTimerFired(now: now + .seconds(5)) == .arm(now + .seconds(9)))
        #expect(machine.awaitAnswer(by: now + .seconds(7)) == .arm(now + .seconds(7)))
        #expect(machine.answerTimerFired(now: now + .seconds(7)) == .answerTimedOut)
        // Fired once: a stray firing does nothing.
        #expect(machine.answerTimerFired(now: now + .seconds(8)) == .none)
    }

    @Test func anAnswerThatBeganDisarmsTheDeadline() {
        var machine = Self.machine(.proxying)
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.awaitAnswer(by: now + .seconds(1))
        machine.answerBegan()
        #expect(machine.answerTimerFired(now: now + .seconds(2)) == .none)
        // Only a proxied request's answer times out.
        var api = Self.machine(.responding)
        _ = api.awaitAnswer(by: now)
        #expect(api.answerTimerFired(now: now + .seconds(1)) == .none)
    }

    // MARK: reads

    @Test func readsWaitWhileHeldOrWhileRequestsWait() {
        var machine = Self.machine(.proxying)
        machine.holdReads()
        let result10 = machine.readRequested()
        #expect(result10 == false)
        let result11 = machine.releaseReads()
        #expect(result11)
        let result12 = machine.releaseReads()
        #expect(result12 == false)
        // A read asked for while a request waits goes ahead once that request is taken.
        var busy = Self.machine(.responding)
        _ = busy.received(.head(Self.head()))
        let result13 = busy.readRequested()
        #expect(result13 == false)
        let result14 = busy.releaseReads()
        #expect(result14 == false)
        _ = busy.answering(keepAlive: true)
        _ = busy.nextWaiting()
        #expect(busy.settle() == .proceed(flushExchange: false, read: true))
    }
}
