import BreakGlassTestSupport
import Foundation
import Testing

/// Request smuggling and parsing (issue 16): raw requests with odd or hostile framing go over TLS to a
/// gateway whose pathway `api` leads to a differential upstream on h11, an independent strict parser.
/// Each request is refused (400; 501 for an unknown transfer coding, 431 for oversize) with nothing
/// complete reaching the upstream, or the upstream sees exactly the intended request (method, path
/// under the base, body bytes), framed, with the gateway's identity headers, and the client gets its
/// answer. After each case a second user's ordinary request still gets its own answer.
@Suite(.serialized, SmugglingFixtureScope())
struct SmugglingTests {
    // MARK: the cases

    @Test(arguments: framingConflicts)
    func framingConflict(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: transferCodings)
    func transferCoding(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: malformedHeads)
    func malformedHead(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: chunkSizes)
    func chunkSize(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: absoluteTargets)
    func absoluteTarget(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: hiddenRequests)
    func hiddenRequest(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: bodiesOnEveryMethod)
    func bodyOnMethod(_ attack: Case) async throws { try await check(attack) }

    @Test(arguments: connectionNamingHeaders)
    func connectionNaming(_ attack: Case) async throws { try await check(attack) }

    static let hello = "hello"

    static let framingConflicts: [Case] = [
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); a gateway that framed by the
        // length would read the rest of the chunked body as a second request.
        Case(
            "cl-te", "POST", head("POST", "cl-te", ["Content-Length: 4", "Transfer-Encoding: chunked"]) + chunked(hello), forwards: hello),
        Case(
            "te-cl", "POST", head("POST", "te-cl", ["Transfer-Encoding: chunked", "Content-Length: 4"]) + chunked(hello), forwards: hello),
        Case(
            "cl-te-long", "POST", head("POST", "cl-te-long", ["Content-Length: 60", "Transfer-Encoding: chunked"]) + chunked(hello),
            forwards: hello),
        Case("dup-cl-equal", "POST", head("POST", "dup-cl-equal", ["Content-Length: 5", "Content-Length: 5"]) + hello, forwards: hello),
        Case("dup-cl-different", "POST", head("POST", "dup-cl-different", ["Content-Length: 5", "Content-Length: 3"]) + hello),
        Case("cl-list-equal", "POST", head("POST", "cl-list-equal", ["Content-Length: 5, 5"]) + hello, forwards: hello),
        Case("cl-list-different", "POST", head("POST", "cl-list-different", ["Content-Length: 5, 3"]) + hello),
    ]

    static let transferCodings: [Case] = [
        // Chunked twice is forbidden (RFC 9112 §7); other codings are not understood (501).
        Case(
            "te-chunked-chunked", "POST", head("POST", "te-chunked-chunked", ["Transfer-Encoding: chunked, chunked"]) + chunked(hello),
            refusals: [400, 501]),
        Case(
            "te-two-fields", "POST",
            head("POST", "te-two-fields", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]) + chunked(hello),
            refusals: [400, 501]),
        Case(
            "te-gzip-chunked", "POST", head("POST", "te-gzip-chunked", ["Transfer-Encoding: gzip, chunked"]) + chunked(hello),
            refusals: [400, 501]),
        Case("te-identity", "POST", head("POST", "te-identity", ["Transfer-Encoding: identity"]) + chunked(hello), refusals: [400, 501]),
        Case("te-xchunked", "POST", head("POST", "te-xchunked", ["Transfer-Encoding: xchunked"]) + chunked(hello), refusals: [400, 501]),
        // Coding names are case-insensitive, and whitespace around a value is not part of it.
        Case("te-capitalized", "POST", head("POST", "te-capitalized", ["Transfer-Encoding: Chunked"]) + chunked(hello), forwards: hello),
        Case(
            "te-leading-space", "POST", head("POST", "te-leading-space", ["Transfer-Encoding:  chunked"]) + chunked(hello), forwards: hello),
        Case(
            "te-trailing-space", "POST", head("POST", "te-trailing-space", ["Transfer-Encoding: chunked "]) + chunked(hello),
            forwards: hello),
        Case("te-tab", "POST", head("POST", "te-tab", ["Transfer-Encoding:\tchunked"]) + chunked(hello), forwards: hello),
        // An HTTP/1.0 message with Transfer-Encoding has faulty framing (RFC 9112 §6.1).
        Case(
            "te-http10", "POST", head("POST", "te-http10", ["Transfer-Encoding: chunked"], version: "1.0") + chunked(hello), refusals: [400]
        ),
    ]

    static let malformedHeads: [Case] = [
        // obs-fold: refused, or unfolded into one value (RFC 9112 §5.2).
        Case("obs-fold-space", "GET", head("GET", "obs-fold-space", ["X-Fold: a", "  b"]), forwards: ""),
        Case("obs-fold-tab", "GET", head("GET", "obs-fold-tab", ["X-Fold: a", "\tb"]), forwards: ""),
        Case(
            "obs-fold-te", "POST", head("POST", "obs-fold-te", ["X-Other: x", "Transfer-Encoding:", " chunked"]) + chunked(hello),
            forwards: hello),
        Case("obs-fold-cl", "POST", head("POST", "obs-fold-cl", ["Content-Length: 5", " 0"]) + hello),
        // Whitespace before the first field: refused, or the line is ignored (RFC 9112 §2.2).
        Case(
            "whitespace-first-line", "POST",
            "POST /p/api/whitespace-first-line HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\n"
                + "Content-Length: 15\r\n\r\n" + chunked(hello), forwards: chunked(hello)),
        // Whitespace between a field name and the colon: 400 (RFC 9112 §5.1).
        Case("space-before-colon", "GET", head("GET", "space-before-colon", ["X-Space : a"]), refusals: [400]),
        Case(
            "space-before-colon-te", "POST",
            head("POST", "space-before-colon-te", ["Transfer-Encoding : chunked", "Content-Length: 15"]) + chunked(hello), refusals: [400]),
        // A bare LF may end a line (RFC 9112 §2.2); if it does, it does so everywhere.
        Case(
            "bare-lf", "GET", "GET /p/api/bare-lf HTTP/1.1\nHost: gw\nAuthorization: Bearer {TOKEN}\nX-A: 1\n\n", forwards: ""),
        Case(
            "bare-lf-before-te", "POST",
            "POST /p/api/bare-lf-before-te HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(hello), forwards: hello),
        Case(
            "bare-lf-chunked", "POST", head("POST", "bare-lf-chunked", ["Transfer-Encoding: chunked"]) + "5\nhello\n0\n\n", forwards: hello),
        // NUL, CR in a value: refused, or replaced by SP (RFC 9110 §5.5); never passed on as they are.
        Case("nul-in-value", "GET", head("GET", "nul-in-value", ["X-Nul: a\u{0}b"]), forwards: ""),
        Case("cr-in-value", "GET", head("GET", "cr-in-value", ["X-Cr: a\rb"]), forwards: ""),
        Case(
            "cr-before-te", "POST",
            head("POST", "cr-before-te", ["X-Cr: a\rTransfer-Encoding: chunked", "Content-Length: 15"]) + chunked(hello),
            forwards: chunked(hello)),
        Case(
            "oversize-header", "GET", head("GET", "oversize-header", ["X-Big: " + String(repeating: "a", count: 20_000)]),
            refusals: [400, 431]),
    ]

    static let chunkSizes: [Case] = [
        // 24 hex digits: 2^64 + 5 wraps to 5 in a 64-bit parser that does not check.
        Case(
            "chunk-size-wraps", "POST",
            head("POST", "chunk-size-wraps", ["Transfer-Encoding: chunked"]) + "000000010000000000000005\r\nhello\r\n0\r\n\r\n",
            refusals: [400, 413]),
        Case(
            "chunk-size-24-f", "POST",
            head("POST", "chunk-size-24-f", ["Transfer-Encoding: chunked"]) + "ffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            refusals: [400, 413]),
        Case(
            "chunk-size-leading-zeros", "POST",
            head("POST", "chunk-size-leading-zeros", ["Transfer-Encoding: chunked"]) + "000000000000000000000005\r\nhello\r\n0\r\n\r\n",
            forwards: hello,
            refusals: [400, 413]),
        Case(
            "chunk-longer-than-size", "POST",
            head("POST", "chunk-longer-than-size", ["Transfer-Encoding: chunked"]) + "3\r\nhello\r\n0\r\n\r\n"),
    ]

    static let absoluteTargets: [Case] = [
        // Taken as /p/api/absolute-form, or refused (404: not a gateway route); never sent to "evil".
        Case(
            "absolute-form", "GET", head("GET", "absolute-form", [], target: "https://evil/p/api/absolute-form"), forwards: "",
            refusals: [400, 404]),
        Case(
            "absolute-form-body", "POST",
            head(
                "POST", "absolute-form-body", ["Content-Length: \(hidden("absolute-form-body").utf8.count)"],
                target: "https://evil/p/api/absolute-form-body")
                + hidden("absolute-form-body"), forwards: hidden("absolute-form-body"), refusals: [400, 404]),
    ]

    static let hiddenRequests: [Case] = [
        Case(
            "hidden-in-chunked", "POST",
            head("POST", "hidden-in-chunked", ["Transfer-Encoding: chunked"]) + chunked(hidden("hidden-in-chunked")),
            forwards: hidden("hidden-in-chunked")),
        Case(
            "hidden-in-length", "POST",
            head("POST", "hidden-in-length", ["Content-Length: \(hidden("hidden-in-length").utf8.count)"]) + hidden("hidden-in-length"),
            forwards: hidden("hidden-in-length")),
    ]

    static let bodiesOnEveryMethod: [Case] = ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "PURGE"].flatMap { method in
        let length = "\(method.lowercased())-length-body"
        let chunkedName = "\(method.lowercased())-chunked-body"
        return [
            Case(
                length, method, head(method, length, ["Content-Length: \(hidden(length).utf8.count)"]) + hidden(length),
                forwards: hidden(length)),
            Case(
                chunkedName, method, head(method, chunkedName, ["Transfer-Encoding: chunked"]) + chunked(hidden(chunkedName)),
                forwards: hidden(chunkedName)),
        ]
    }

    static let connectionNamingHeaders: [Case] =
        ["POST", "GET"].flatMap { method in
            let length = "connection-content-length-\(method.lowercased())"
            let coding = "connection-transfer-encoding-\(method.lowercased())"
            return [
                Case(
                    length, method,
                    head(method, length, ["Connection: Content-Length", "Content-Length: \(hidden(length).utf8.count)"]) + hidden(length),
                    forwards: hidden(length)),
                Case(
                    coding, method,
                    head(method, coding, ["Connection: Transfer-Encoding", "Transfer-Encoding: chunked"]) + chunked(hidden(coding)),
                    forwards: hidden(coding)),
            ]
        } + [
            Case("connection-host", "GET", head("GET", "connection-host", ["Connection: Host"]), forwards: ""),
            Case(
                "connection-x-breakglass-user", "GET",
                head("GET", "connection-x-breakglass-user", ["Connection: X-BreakGlass-User", "X-BreakGlass-User: admin"]),
                forwards: ""),
            Case(
                "connection-close-content-length", "DELETE",
                head(
                    "DELETE", "connection-close-content-length",
                    ["Connection: close, Content-Length", "Content-Length: \(hidden("connection-close-content-length").utf8.count)"])
                    + hidden("connection-close-content-length"), forwards: hidden("connection-close-content-length")),
        ]

    // MARK: building requests

    /// A request head: the request line (target `/p/api/NAME` unless given), Host, the bearer token
    /// (`{TOKEN}`), `fields` as they are (a field may be a continuation line), and the blank line.
    static func head(_ method: String, _ name: String, _ fields: [String], version: String = "1.1", target: String? = nil) -> String {
        let lines = ["\(method) \(target ?? "/p/api/\(name)") HTTP/\(version)", "Host: gw", "Authorization: Bearer {TOKEN}"] + fields
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// `body` as one chunk and the last chunk.
    static func chunked(_ body: String) -> String {
        String(body.utf8.count, radix: 16) + "\r\n" + body + "\r\n0\r\n\r\n"
    }

    /// A complete request meant to reach the upstream as body bytes only: if it is parsed as a request,
    /// it goes outside the client's path, as `admin`, and its answer comes 1 s later, when the gateway
    /// may have given the connection to the next user.
    static func hidden(_ name: String) -> String {
        "GET /base/smuggled-\(name)?delay=1000 HTTP/1.1\r\nHost: upstream\r\nX-BreakGlass-User: admin\r\n\r\n"
    }

    /// One attack: the bytes the client sends, and what may come of them.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var method: String
        /// The request, with `{TOKEN}` where the bearer token goes.
        var template: String
        /// The body the upstream must see if the request is forwarded; nil: it must be refused.
        var forwardedBody: String?
        /// The statuses that count as a refusal: 400, and 501 where a transfer coding is not understood.
        var refusals: Set<Int>

        /// Without `forwards`, the request must be refused.
        init(_ name: String, _ method: String, _ template: String, forwards: String? = nil, refusals: Set<Int> = [400]) {
            self.name = name
            self.method = method
            self.template = template
            self.forwardedBody = forwards
            self.refusals = refusals
        }

        var testDescription: String { name }

        func bytes(token: String) -> [UInt8] { Array(template.replacing("{TOKEN}", with: token).utf8) }
    }

    // MARK: checking

    /// Sends the attack as alice, judges the answer and what the upstream saw, then has bob make an
    /// ordinary request on the same pathway.
    func check(_ attack: Case) async throws {
        let fixture = try #require(Self.current, "the suite's fixture did not start")
        let before = fixture.upstream.records().count
        let exchange = try await fixture.exchange(attack.bytes(token: fixture.alice), method: attack.method)
        let window = Array(fixture.upstream.records().dropFirst(before))
        let requests = window.filter { $0.kind == .request }
        let problems = window.filter { $0.kind != .request }
        var failures: [String] = []
        if let first = exchange.responses.first {
            if exchange.responses.count != 1 { failures.append("one request got \(exchange.responses.count) answers") }
            if attack.refusals.contains(first.status) {
                if !requests.isEmpty { failures.append("refused with \(first.status), yet the upstream saw \(requests.count) request(s)") }
                if problems.contains(where: { $0.kind != .incomplete }) { failures.append("the upstream met a protocol error") }
            } else if let body = attack.forwardedBody {
                failures += fixture.forwardedProblems(
                    first, requests: requests, problems: problems, method: attack.method, target: "/base/\(attack.name)", body: body,
                    user: "alice")
            } else {
                failures.append("must be refused with \(attack.refusals.sorted()), got \(first.status)")
                if !requests.isEmpty { failures.append("the upstream saw \(requests.count) request(s)") }
            }
        } else {
            failures.append(exchange.closed ? "closed without an answer" : "no answer within 5 s (hangs)")
            if !requests.isEmpty { failures.append("the upstream saw \(requests.count) request(s)") }
        }
        if !failures.isEmpty {
            Issue.record(Comment(rawValue: "\(attack.name): \(failures.joined(separator: "; "))\n\(Fixture.story(exchange, window))"))
        }
        try await fixture.checkSecondUser(after: attack.name)
    }

    // MARK: the fixture, one per suite run

    @TaskLocal static var current: Fixture?

    final class Fixture: Sendable {
        let upstream: H11Upstream
        let gateway: TestGateway
        /// alice sends the attacks; bob the ordinary requests after them.
        let alice: String
        let bob: String

        private init(upstream: H11Upstream, gateway: TestGateway, alice: String, bob: String) {
            self.upstream = upstream
            self.gateway = gateway
            self.alice = alice
            self.bob = bob
        }

        static func start() async throws -> Fixture {
            let upstream = try await H11Upstream()
            let policy = """
                groups:
                  sre: [alice, bob]
                pathways:
                  api:
                    kind: http
                    upstream: http://127.0.0.1:\(upstream.port)/base
                    allow: { groups: [sre] }
                    default_duration: 30m
                    max_duration: 1h

                """
            let gateway: TestGateway
            do { gateway = try await TestGateway(policyBody: policy) } catch {
                await upstream.stop()
                throw error
            }
            let client = try HTTPSTestClient(caPath: gateway.pki.caPath)
            do {
                let alice = try await login("alice", gateway: gateway, client: client)
                let bob = try await login("bob", gateway: gateway, client: client)
                await client.shutdown()
                return Fixture(upstream: upstream, gateway: gateway, alice: alice, bob: bob)
            } catch {
                await client.shutdown()
                await gateway.stop()
                await upstream.stop()
                throw error
            }
        }

        static func login(_ user: String, gateway: TestGateway, client: HTTPSTestClient) async throws -> String {
            let body = TestGateway.grantBody(
                user: user, password: gateway.pam.password(user), otp: try await gateway.pam.code(user), pathway: "api")
            let response = try await client.request(.POST, gateway.baseURL + "/v1/grants", body: body)
            guard response.status == 201, let token = response.json["token"] as? String else {
                throw TestSupportError("login of \(user) failed: \(response.status) \(response.text)")
            }
            return token
        }

        func stop() async {
            await gateway.stop()
            await upstream.stop()
        }

        struct Exchange {
            var raw: [UInt8]
            var responses: [RawResponse]
            var closed: Bool
        }

        /// Sends `bytes` on a new TLS connection and collects the answers: up to 5 s for the first, then
        /// a short while for anything after it (a second answer, a record of the upstream).
        func exchange(_ bytes: [UInt8], method: String) async throws -> Exchange {
            let connection = try await TLSTestConnection(port: gateway.port, caPath: gateway.pki.caPath)
            // A gateway that refuses early may close before it has read everything: what it answered counts.
            try? await connection.send(bytes)
            let isHead = method == "HEAD"
            await connection.wait(timeout: .seconds(5)) { $0.isClosed || !RawResponse.parse($0.bytes, head: isHead, closed: false).isEmpty }
            try await Task.sleep(for: .milliseconds(250))
            let closed = connection.isClosed
            let raw = connection.bytes
            // Not awaited: the TLS close waits up to 5 s for the gateway's close_notify.
            Task { await connection.close() }
            return Exchange(raw: raw, responses: RawResponse.parse(raw, head: isHead, closed: closed), closed: closed)
        }

        /// What is wrong with a forwarded request: the upstream must have seen exactly this one request,
        /// framed as h11 reads it, with one Host (the upstream's) and the gateway's user only; the client
        /// must have got the answer to it.
        func forwardedProblems(
            _ answer: RawResponse, requests: [H11Upstream.Record], problems: [H11Upstream.Record], method: String, target: String,
            body: String,
            user: String
        ) -> [String] {
            var failures: [String] = []
            if !problems.isEmpty { failures.append("the upstream met \(problems.map(\.kind.rawValue).joined(separator: ", "))") }
            guard requests.count == 1, let request = requests.first else {
                failures.append("the upstream saw \(requests.count) requests, not 1")
                return failures
            }
            if request.method != method { failures.append("method \(request.method), not \(method)") }
            if request.target != target { failures.append("target \(request.target), not \(target)") }
            if request.body != Array(body.utf8) { failures.append("body of \(request.body.count) bytes, not the \(body.utf8.count) sent") }
            if request.values("host") != ["127.0.0.1:\(upstream.port)"] { failures.append("Host \(request.values("host"))") }
            if request.values("x-breakglass-user") != [user] { failures.append("X-BreakGlass-User \(request.values("x-breakglass-user"))") }
            if !request.values("transfer-encoding").isEmpty, !request.values("content-length").isEmpty {
                failures.append("both Transfer-Encoding and Content-Length went upstream")
            }
            if answer.status != 200 { failures.append("answered \(answer.status), not 200") }
            if answer.seen != request.sequence {
                failures.append("the client got the answer to request #\(answer.seen ?? 0), not to its own #\(request.sequence ?? 0)")
            }
            return failures
        }

        /// bob's ordinary request after a case gets its own answer, and the upstream sees only it.
        func checkSecondUser(after name: String) async throws {
            let before = upstream.records().count
            let target = "/p/api/after-\(name)"
            let exchange = try await exchange(
                Array("GET \(target) HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer \(bob)\r\n\r\n".utf8), method: "GET")
            let window = Array(upstream.records().dropFirst(before))
            // A request the gateway cut short in the case before may be noticed by the upstream only now.
            let problems = window.filter { $0.kind != .request && !($0.kind == .incomplete && $0.target.contains(name)) }
            var failures: [String]
            if exchange.responses.count == 1, let answer = exchange.responses.first {
                let requests = window.filter { $0.kind == .request }
                failures = forwardedProblems(
                    answer, requests: requests, problems: problems, method: "GET", target: "/base/after-\(name)", body: "", user: "bob")
            } else {
                failures = ["\(exchange.responses.count) answers\(exchange.closed ? ", closed" : "")"]
            }
            if !failures.isEmpty {
                Issue.record(
                    Comment(rawValue: "bob's request after \(name): \(failures.joined(separator: "; "))\n\(Self.story(exchange, window))"))
            }
        }

        static func story(_ exchange: Exchange, _ window: [H11Upstream.Record]) -> String {
            let answer = String(decoding: exchange.raw.prefix(400), as: UTF8.self)
            let seen = window.isEmpty ? "  (nothing)" : window.map { "  \($0)" }.joined(separator: "\n")
            return "  client got: \(answer.debugDescription)\(exchange.closed ? " (closed)" : "")\n  upstream saw:\n\(seen)"
        }
    }

    /// An HTTP/1.1 response read from raw bytes.
    struct RawResponse {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: [UInt8]

        func values(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        }

        /// The upstream's number for the request answered: `X-Seen` (HEAD has no body), else `{"seen": N}`.
        var seen: Int? {
            if let header = values("x-seen").first { return Int(header) }
            let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
            return object?["seen"] as? Int
        }

        /// The complete responses at the start of `bytes`, interim (1xx) ones left out; `head`: they answer HEAD.
        static func parse(_ bytes: [UInt8], head: Bool, closed: Bool) -> [RawResponse] {
            var responses: [RawResponse] = []
            var index = 0
            while index < bytes.count {
                guard let end = find([13, 10, 13, 10], in: bytes, from: index) else { break }
                var lines = String(decoding: bytes[index..<end], as: UTF8.self).components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else { break }
                let headers = lines.compactMap { line -> (name: String, value: String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }
                var response = RawResponse(status: status, headers: headers, body: [])
                var cursor = end + 4
                if status < 200 {
                    index = cursor
                    continue
                }
                if head || status == 204 || status == 304 {
                    // No body.
                } else if response.values("transfer-encoding").contains(where: { $0.lowercased().contains("chunked") }) {
                    guard let (body, next) = dechunk(bytes, from: cursor) else { break }
                    response.body = body
                    cursor = next
                } else if let length = response.values("content-length").first.flatMap({ Int($0) }) {
                    guard cursor + length <= bytes.count else { break }
                    response.body = Array(bytes[cursor..<cursor + length])
                    cursor += length
                } else {
                    guard closed else { break }
                    response.body = Array(bytes[cursor...])
                    cursor = bytes.count
                }
                responses.append(response)
                index = cursor
            }
            return responses
        }

        /// A chunked body from `start`, and where it ends; nil while incomplete.
        static func dechunk(_ bytes: [UInt8], from start: Int) -> ([UInt8], Int)? {
            var body: [UInt8] = []
            var cursor = start
            while true {
                guard let lineEnd = find([13, 10], in: bytes, from: cursor) else { return nil }
                let line = String(decoding: bytes[cursor..<lineEnd], as: UTF8.self)
                guard let size = Int(line.split(separator: ";").first ?? "", radix: 16) else { return nil }
                cursor = lineEnd + 2
                if size == 0 {
                    // Trailer fields, then the blank line.
                    while true {
                        guard let end = find([13, 10], in: bytes, from: cursor) else { return nil }
                        let blank = end == cursor
                        cursor = end + 2
                        if blank { return (body, cursor) }
                    }
                }
                guard cursor + size + 2 <= bytes.count else { return nil }
                body += bytes[cursor..<cursor + size]
                cursor += size + 2
            }
        }

        static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
            guard bytes.count >= needle.count, start <= bytes.count - needle.count else { return nil }
            for index in start...(bytes.count - needle.count) where bytes[index..<index + needle.count].elementsEqual(needle) {
                return index
            }
            return nil
        }
    }
}

/// Starts the upstream, the gateway and two logins once for the suite, and stops them after it.
struct SmugglingFixtureScope: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let fixture = try await SmugglingTests.Fixture.start()
        do {
            try await SmugglingTests.$current.withValue(fixture) { try await function() }
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }
}
