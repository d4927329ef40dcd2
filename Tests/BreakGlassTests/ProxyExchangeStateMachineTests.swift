import BreakGlassCore
import NIOCore
import NIOHTTP1
import Testing

@testable import BreakGlassProxy

/// `ProxyExchangeStateMachine` with plain values: forwarding, streaming the answer, the retry
/// rule, when the upstream connection goes back to the pool, and how each kind of ending is told.
@Suite struct ProxyExchangeStateMachineTests {
    typealias Machine = ProxyExchangeStateMachine

    enum Named: CaseIterable {
        /// Claimed, waiting for a connection.
        case connecting
        /// The request went upstream; no answer yet.
        case exchanging
        /// The answer's head went to the client.
        case answering
        /// A WebSocket `101` waits for its end.
        case upgrading
        case finished
    }

    static func head(_ method: HTTPMethod = .GET, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/p/web/x", headers: HTTPHeaders(headers))
    }

    static let upstream = Upstream(scheme: .http, host: "127.0.0.1", port: 9)

    static func machine(_ head: HTTPRequestHead = head()) -> Machine {
        Machine(
            request: .init(head: head, pathway: "web", upstream: Self.upstream, maxConnectionsPerSession: 4, responseTimeout: .seconds(5)))
    }

    static let webSocket = [
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k"), ("Sec-WebSocket-Version", "13"),
    ]

    static func response(_ status: HTTPResponseStatus = .ok, _ headers: [(String, String)] = []) -> HTTPResponseHead {
        HTTPResponseHead(version: .http1_1, status: status, headers: HTTPHeaders(headers))
    }

    static func machine(_ named: Named) -> Machine {
        var machine = machine(named == .upgrading ? head(.GET, webSocket) : head())
        _ = machine.clientPart(.end(nil))
        _ = machine.start(claimed: true)
        guard named != .connecting else { return machine }
        _ = machine.connected(reused: true, active: true)
        switch named {
        case .connecting, .exchanging:
            break
        case .answering:
            _ = machine.upstreamRead(.head(response()))
        case .upgrading:
            _ = machine.upstreamRead(.head(response(.switchingProtocols)))
        case .finished:
            _ = machine.upstreamRead(.head(response()))
            _ = machine.upstreamRead(.end(nil))
        }
        return machine
    }

    /// The `Finish` of an action, if it ends the exchange.
    static func finish(_ action: Machine.Action) -> Machine.Finish? {
        switch action {
        case .finish(let finish), .answerEnd(_, let finish): finish
        default: nil
        }
    }

    // MARK: a whole exchange

    @Test func aCleanExchangeGoesBackToThePool() {
        var machine = Self.machine()
        #expect(machine.clientPart(.end(nil)) == .none)
        #expect(machine.start(claimed: true) == .connect(fresh: false))
        #expect(machine.connected(reused: false, active: true) == .sendRequest(waiting: [.end(nil)], answerContinue: false))
        #expect(machine.upstreamRead(.head(Self.response())) == .answerHead(Self.response()))
        #expect(machine.upstreamRead(.body(ByteBuffer(string: "hello"))) == .answerBody(ByteBuffer(string: "hello")))
        let end = machine.upstreamRead(.end(nil))
        #expect(
            end
                == .answerEnd(
                    nil,
                    .init(
                        outcome: "ok", status: 200, keepClient: true, answer: nil, closeClient: false, poolConnection: true,
                        releaseClaim: true)))
        #expect(machine.state == .finished)
        #expect(machine.bytesOut == 5)
    }

    @Test func aBodyStreamsUpstreamAndEachPartMovesTheDeadline() {
        var machine = Self.machine(Self.head(.POST, [("Content-Length", "4")]))
        _ = machine.start(claimed: true)
        #expect(machine.clientPart(.body(ByteBuffer(string: "ab"))) == .none)
        #expect(
            machine.connected(reused: false, active: true)
                == .sendRequest(waiting: [.body(ByteBuffer(string: "ab"))], answerContinue: false))
        #expect(machine.clientPart(.body(ByteBuffer(string: "cd"))) == .forward(.body(ByteBuffer(string: "cd")), extendDeadline: true))
        #expect(machine.clientPart(.end(nil)) == .forward(.end(nil), extendDeadline: true))
        #expect(machine.bytesIn == 4)
        #expect(machine.requestEnded)
    }

    @Test func aSessionWithoutASpareConnectionIsTold() {
        var machine = Self.machine()
        let finish = Self.finish(machine.start(claimed: false))
        #expect(finish?.answer?.code == .upstreamBusy)
        #expect(finish?.releaseClaim == false)
        #expect(finish?.outcome == "busy")
        #expect(machine.connected(reused: false, active: true) == .discardConnection)
    }

    @Test func expectContinueIsAnsweredByTheGatewayWhileTheBodyIsToCome() {
        var waiting = Self.machine(Self.head(.PUT, [("Content-Length", "1"), ("Expect", "100-continue")]))
        _ = waiting.start(claimed: true)
        #expect(waiting.connected(reused: false, active: true) == .sendRequest(waiting: [], answerContinue: true))
        var sent = Self.machine(Self.head(.PUT, [("Content-Length", "1"), ("Expect", "100-continue")]))
        _ = sent.clientPart(.body(ByteBuffer(string: "x")))
        _ = sent.clientPart(.end(nil))
        _ = sent.start(claimed: true)
        guard case .sendRequest(_, let answerContinue) = sent.connected(reused: false, active: true) else {
            Issue.record("the request was not sent")
            return
        }
        #expect(answerContinue == false)
    }

    // MARK: what keeps the upstream connection out of the pool

    @Test func unusualFramingClosesTheUpstreamConnection() {
        var machine = Self.machine(Self.head(.POST, [("Transfer-Encoding", "chunked")]))
        _ = machine.start(claimed: true)
        _ = machine.connected(reused: false, active: true)
        _ = machine.clientPart(.end(nil))
        _ = machine.upstreamRead(.head(Self.response()))
        #expect(Self.finish(machine.upstreamRead(.end(nil)))?.poolConnection == false)
    }

    @Test func anUpstreamThatClosesAfterItsAnswerIsNotPooled() {
        var machine = Self.machine(.exchanging)
        _ = machine.upstreamRead(.head(Self.response(.ok, [("Connection", "close")])))
        let finish = Self.finish(machine.upstreamRead(.end(nil)))
        #expect(finish?.poolConnection == false)
        #expect(finish?.keepClient == true)
    }

    @Test func anAnswerBeforeTheRequestEndedEndsBothConnections() {
        var machine = Self.machine(Self.head(.POST, [("Content-Length", "9")]))
        _ = machine.start(claimed: true)
        _ = machine.connected(reused: false, active: true)
        _ = machine.upstreamRead(.head(Self.response(.payloadTooLarge)))
        let finish = Self.finish(machine.upstreamRead(.end(nil)))
        #expect(finish?.keepClient == false)
        #expect(finish?.poolConnection == false)
        #expect(finish?.status == 413)
    }

    // MARK: the retry rule

    @Test func aPooledConnectionClosedUnansweredIsRetriedOnceForAnIdempotentRequest() {
        var machine = Self.machine(.exchanging)
        #expect(machine.mayRetry)
        #expect(machine.retrying() == .retry)
        #expect(machine.state == .connecting(waiting: [.end(nil)]))
        #expect(machine.connected(reused: true, active: true) == .sendRequest(waiting: [.end(nil)], answerContinue: false))
        // Once only.
        #expect(machine.mayRetry == false)
        let finish = Self.finish(machine.upstreamClosed())
        #expect(finish?.answer?.code == .upstreamUnreachable)
        #expect(finish?.outcome == "upstream closed")
        #expect(finish?.releaseClaim == true)
    }

    @Test(arguments: [HTTPMethod.POST, .PATCH, .CONNECT]) func aRequestThatMayNotBeRepeatedIsNotRetried(_ method: HTTPMethod) {
        var machine = Self.machine(Self.head(method))
        _ = machine.clientPart(.end(nil))
        _ = machine.start(claimed: true)
        _ = machine.connected(reused: true, active: true)
        #expect(machine.mayRetry == false)
        #expect(machine.retrying() == .none)
    }

    @Test func onlyAPooledConnectionWithoutAnAnswerOrAnErrorIsRetried() {
        var fresh = Self.machine()
        _ = fresh.start(claimed: true)
        _ = fresh.connected(reused: false, active: true)
        #expect(fresh.mayRetry == false)
        var withBody = Self.machine(Self.head(.PUT, [("Content-Length", "1")]))
        _ = withBody.start(claimed: true)
        _ = withBody.connected(reused: true, active: true)
        #expect(withBody.mayRetry == false)
        var failed = Self.machine(.exchanging)
        failed.upstreamFailed(reason: "handshake failed")
        #expect(failed.mayRetry == false)
        let finish = Self.finish(failed.upstreamClosed())
        #expect(finish?.outcome == "upstream failed")
        #expect(finish?.answer?.message.contains("handshake failed") == true)
        #expect(Self.machine(.answering).mayRetry == false)
        #expect(Self.machine(.upgrading).mayRetry == false)
    }

    @Test func aConnectionClosedOnArrivalIsHandledAsAClose() {
        var machine = Self.machine()
        _ = machine.clientPart(.end(nil))
        _ = machine.start(claimed: true)
        #expect(machine.connected(reused: true, active: false) == .closedOnArrival)
        #expect(machine.mayRetry)
    }

    // MARK: every state × the events that end an exchange

    @Test(arguments: Named.allCases) func theUpstreamClosingInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let finish = Self.finish(machine.upstreamClosed())
        switch named {
        case .connecting, .finished:
            #expect(finish == nil)
        case .exchanging, .upgrading:
            #expect(finish?.answer?.code == .upstreamUnreachable)
            #expect(finish?.closeClient == false)
        case .answering:
            // The answer began: the client connection is cut, and nothing else is written.
            #expect(finish?.answer == nil)
            #expect(finish?.closeClient == true)
            #expect(finish?.outcome == "upstream closed")
        }
        #expect(finish?.poolConnection != true)
    }

    @Test(arguments: Named.allCases) func theDeadlineInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let finish = Self.finish(machine.answerTimedOut())
        switch named {
        case .exchanging:
            #expect(finish?.answer?.code == .upstreamTimeout)
            #expect(finish?.outcome == "timeout")
        case .connecting, .answering, .upgrading, .finished:
            // Not armed yet, or the answer began.
            #expect(finish == nil)
        }
    }

    @Test(arguments: Named.allCases) func theClientLeavingInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let finish = Self.finish(machine.clientClosed())
        if named == .finished {
            #expect(finish == nil)
        } else {
            #expect(finish?.outcome == "client closed")
            #expect(finish?.poolConnection == false)
            #expect(finish?.releaseClaim == true)
        }
        // A connection that arrives afterwards is closed.
        #expect(machine.connected(reused: false, active: true) == .discardConnection)
    }

    @Test(arguments: Named.allCases) func theClientFailingInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let finish = Self.finish(machine.clientFailed(BreakGlassError(.requestTimeout, "slow")))
        switch named {
        case .finished:
            #expect(finish == nil)
        case .answering:
            #expect(finish?.closeClient == true)
            #expect(finish?.answer == nil)
        case .connecting, .exchanging, .upgrading:
            #expect(finish?.answer?.code == .requestTimeout)
            #expect(finish?.outcome == "client too slow")
        }
        #expect(finish?.poolConnection != true)
    }

    @Test(arguments: Named.allCases) func anAnswerPartInEachState(_ named: Named) {
        var machine = Self.machine(named)
        let action = machine.upstreamRead(.body(ByteBuffer(string: "x")))
        switch named {
        case .connecting, .finished:
            #expect(action == .none)
        case .exchanging, .answering, .upgrading:
            #expect(action == .answerBody(ByteBuffer(string: "x")))
        }
    }

    // MARK: switching protocols

    @Test func aWebSocketUpgradeBecomesATunnelWithItsClaim() {
        var machine = Self.machine(Self.head(.GET, Self.webSocket))
        _ = machine.clientPart(.end(nil))
        #expect(machine.start(claimed: true) == .connect(fresh: true))
        _ = machine.connected(reused: false, active: true)
        #expect(machine.upstreamRead(.head(Self.response(.switchingProtocols))) == .answerBegan)
        #expect(machine.upstreamRead(.end(nil)) == .upgrade(Self.response(.switchingProtocols), holdsClaim: true))
        #expect(machine.state == .finished)
    }

    /// A refused upgrade is an ordinary answer, but its connection was made with a decoder that
    /// passes on the bytes after an answer (for a tunnel): it is not pooled.
    @Test func aRefusedUpgradeAnswersButItsConnectionIsNotPooled() {
        var machine = Self.machine(Self.head(.GET, Self.webSocket))
        _ = machine.clientPart(.end(nil))
        _ = machine.start(claimed: true)
        _ = machine.connected(reused: false, active: true)
        #expect(machine.upstreamRead(.head(Self.response(.ok))) == .answerHead(Self.response(.ok)))
        let finish = Self.finish(machine.upstreamRead(.end(nil)))
        #expect(finish?.outcome == "ok")
        #expect(finish?.keepClient == true)
        #expect(finish?.poolConnection == false)
    }

    @Test func aSwitchNobodyAskedForEndsTheExchange() {
        var machine = Self.machine(.exchanging)
        let finish = Self.finish(machine.upstreamRead(.head(Self.response(.switchingProtocols))))
        #expect(finish?.answer?.code == .upstreamUnreachable)
        #expect(finish?.poolConnection == false)
    }

    @Test func informationalAnswersPassWithoutStartingTheAnswer() {
        var machine = Self.machine(.exchanging)
        #expect(machine.upstreamRead(.head(Self.response(.continue))) == .answerBegan)
        // The answer has not begun: its deadline can still pass.
        let extended = machine.extendDeadline()
        #expect(extended)
        #expect(Self.finish(machine.answerTimedOut())?.answer?.code == .upstreamTimeout)
    }

    @Test func onlyIdempotentMethodsCountAsIdempotent() {
        #expect(Machine.isIdempotent(.GET) && Machine.isIdempotent(.PUT) && Machine.isIdempotent(.DELETE))
        #expect(!Machine.isIdempotent(.POST) && !Machine.isIdempotent(.PATCH) && !Machine.isIdempotent(.CONNECT))
    }
}
