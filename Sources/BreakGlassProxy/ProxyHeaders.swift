import BreakGlassCore
import NIOCore
import NIOHTTP1

/// Header hygiene for proxied HTTP: hop-by-hop headers go, the gateway's credentials never reach
/// the upstream, and identity headers are set by the gateway only.
public enum ProxyHeaders {
    /// Hop-by-hop headers (RFC 9110 §7.6.1), plus the proxy credentials.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate",
    ]

    /// Headers only the gateway may set (or handles itself, as `Expect`); copies sent by a client
    /// are dropped, as are all names starting with `gatewayOwnedPrefixes`.
    static let gatewayOwned: Set<String> = [
        "authorization", "expect", "x-breakglass-user", "x-breakglass-session", "x-forwarded-for", "x-forwarded-proto",
        "x-forwarded-host", "forwarded",
    ]
    static let gatewayOwnedPrefixes = ["x-breakglass", "x-forwarded"]

    /// Headers that claim the client's address, another URL or another method: an upstream behind
    /// a proxy it trusts would believe them (and `Proxy` is httpoxy's `HTTP_PROXY` under CGI).
    static let claims: Set<String> = [
        "x-real-ip", "true-client-ip", "x-client-ip", "client-ip", "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip",
        "x-originating-ip", "x-remote-ip", "x-remote-addr", "x-proxyuser-ip", "x-original-url", "x-original-uri", "x-rewrite-url",
        "x-original-host", "x-host", "x-http-method-override", "x-http-method", "x-method-override", "proxy",
    ]

    /// The headers that frame a message's body; the gateway writes its own.
    static let framing: Set<String> = ["content-length", "transfer-encoding"]

    /// What may not come as a trailer besides: routing, credentials, and what says how to read the
    /// content or the request (RFC 9110 §6.5.1).
    static let notTrailers: Set<String> = [
        "host", "authorization", "proxy-authorization", "cookie", "content-type", "content-encoding", "content-range",
        "content-location", "trailer", "cache-control", "max-forwards", "pragma", "range", "if-match", "if-none-match",
        "if-modified-since", "if-unmodified-since", "if-range", "www-authenticate", "set-cookie", "age", "expires", "location",
        "retry-after", "vary", "warning", "date",
    ]

    /// What a response loses on its way to the client.
    static let droppedDownstream = HeaderNameSet(hopByHop)
    static let connectionName = HeaderNameSet(["connection"])
    /// What a client's request loses on its way upstream: the hop-by-hop headers, the gateway's own
    /// headers and `Host` (set to the upstream's), claims of address or URL, and the framing (the
    /// gateway's own is written). `_` counts as `-`.
    static let droppedUpstream = HeaderNameSet(
        hopByHop.union(gatewayOwned).union(claims).union(framing).union(["host"]), prefixes: gatewayOwnedPrefixes,
        underscoresAsHyphens: true)
    /// What a client's trailers lose: what its headers lose, and all that a trailer may not carry.
    static let droppedTrailers = HeaderNameSet(
        hopByHop.union(gatewayOwned).union(claims).union(framing).union(notTrailers), prefixes: gatewayOwnedPrefixes,
        underscoresAsHyphens: true)
    /// What a `Connection` header cannot take away: the framing, `Host` and the identity headers.
    static let keptDespiteConnection = HeaderNameSet(
        framing.union(["host", "forwarded"]), prefixes: gatewayOwnedPrefixes, underscoresAsHyphens: true)

    static let transferEncodingName = HeaderNameSet(["transfer-encoding"])
    static let contentLengthName = HeaderNameSet(["content-length"])
    static let authorizationName = HeaderNameSet(["authorization"])
    static let proxyAuthorizationName = HeaderNameSet(["proxy-authorization"])
    static let hostName = HeaderNameSet(["host"])

    /// Who the request is from, as the upstream is told.
    public struct Identity: Sendable {
        /// The user the grant was issued to (`X-BreakGlass-User`).
        public var user: String
        /// The grant's session ID (`X-BreakGlass-Session`).
        public var session: String
        /// The client's IP address (`X-Forwarded-For`); nil when unknown.
        public var clientAddress: String?

        /// An identity with the given fields.
        public init(user: String, session: String, clientAddress: String?) {
            self.user = user
            self.session = session
            self.clientAddress = clientAddress
        }
    }

    /// Whether the client waits for `100 Continue` before sending its body.
    public static func expectsContinue(_ headers: HTTPHeaders) -> Bool {
        headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
    }

    /// Whether the request asks for a WebSocket upgrade.
    public static func isWebSocketUpgrade(_ headers: HTTPHeaders) -> Bool {
        // Most requests have no `Upgrade` header: that answers without splitting `Connection`.
        guard headers.contains(name: "upgrade") else { return false }
        return headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
            && headers["upgrade"].contains { $0.lowercased() == "websocket" }
    }

    /// The request head sent upstream: `uri` replaces the client's, `host` is the upstream's
    /// authority, the identity headers are added, and the body is framed by the gateway for every
    /// method (see `bodyFraming`): `Content-Length` when the client gave one, chunked when the
    /// client's body was chunked, none without a body (`Content-Length: 0` for POST, PUT, PATCH).
    /// Meant for requests `requestProblem` passed.
    public static func upstreamRequest(
        _ head: HTTPRequestHead,
        uri: String,
        host: String,
        identity: Identity,
        webSocket: Bool
    ) -> HTTPRequestHead {
        var headers = removingHopByHop(head.headers, dropping: droppedUpstream)
        headers.add(name: "Host", value: host)
        headers.add(name: "X-BreakGlass-User", value: identity.user)
        headers.add(name: "X-BreakGlass-Session", value: identity.session)
        if let address = identity.clientAddress { headers.add(name: "X-Forwarded-For", value: address) }
        headers.add(name: "X-Forwarded-Proto", value: "https")
        switch bodyFraming(head) {
        case .chunked:
            // Exactly this spelling: NIO's encoder chunks the body when it sees it.
            headers.add(name: "Transfer-Encoding", value: "chunked")
        case .length(let length):
            headers.add(name: "Content-Length", value: String(length))
        case .none:
            if definesContent(head.method) { headers.add(name: "Content-Length", value: "0") }
        }
        if webSocket {
            headers.add(name: "Connection", value: "Upgrade")
            headers.add(name: "Upgrade", value: "websocket")
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: headers)
    }

    /// How a request's body is delimited.
    public enum BodyFraming: Hashable, Sendable {
        /// No body.
        case none
        /// `Content-Length` bytes.
        case length(Int)
        /// Chunked, to its last chunk.
        case chunked
    }

    /// Whether the request has body bytes to read, framed as NIO's decoder reads it.
    public static func hasBody(_ head: HTTPRequestHead) -> Bool {
        switch bodyFraming(head) {
        case .none, .length(0): false
        case .length, .chunked: true
        }
    }

    /// How the client's request body is delimited, as NIO's decoder read it: chunked with any
    /// `Transfer-Encoding`, else by `Content-Length`, else none. A `Content-Length` that is not a
    /// number counts as chunked (a body the gateway frames itself; `requestProblem` refuses it).
    public static func bodyFraming(_ head: HTTPRequestHead) -> BodyFraming {
        var length: Int?
        var lengthSeen = false
        for (name, value) in head.headers {
            if transferEncodingName.contains(name) { return .chunked }
            if !lengthSeen, contentLengthName.contains(name) {
                lengthSeen = true
                length = contentLength(value)
            }
        }
        guard lengthSeen else { return .none }
        return length.map { .length($0) } ?? .chunked
    }

    /// Whether the request's framing is out of the ordinary, so that its upstream connection is
    /// closed after the exchange rather than pooled: a chunked body, or a body on a method other
    /// than POST, PUT and PATCH.
    public static func hasUnusualFraming(_ head: HTTPRequestHead) -> Bool {
        switch bodyFraming(head) {
        case .none: false
        case .chunked: true
        case .length(let length): length > 0 && !definesContent(head.method)
        }
    }

    /// Why a request head cannot be forwarded as it is, or nil: conflicting or unknown framing
    /// (RFC 9112 §6), more than one `Authorization`, `Proxy-Authorization` or `Host`, NUL, CR or LF
    /// in a field. `invalid_request` (400), or `not_implemented` (501) for a transfer coding other
    /// than chunked.
    public static func requestProblem(_ head: HTTPRequestHead) -> BreakGlassError? {
        var transferEncoding: String?
        var transferEncodings = 0
        var contentLengths = 0
        var lengthIsNumber = true
        var authorizations = 0
        var proxyAuthorizations = 0
        var hosts = 0
        for (name, value) in head.headers {
            if hasLineBreakOrNUL(name) || hasLineBreakOrNUL(value) {
                return BreakGlassError(.invalidRequest, "header fields may not contain NUL, CR or LF")
            }
            if transferEncodingName.contains(name) {
                transferEncodings += 1
                transferEncoding = value
            } else if contentLengthName.contains(name) {
                contentLengths += 1
                if contentLength(value) == nil { lengthIsNumber = false }
            } else if authorizationName.contains(name) {
                authorizations += 1
            } else if proxyAuthorizationName.contains(name) {
                proxyAuthorizations += 1
            } else if hostName.contains(name) {
                hosts += 1
            }
        }
        if authorizations > 1 || proxyAuthorizations > 1 {
            return BreakGlassError(.invalidRequest, "send one Authorization (or Proxy-Authorization) header, not several")
        }
        if hosts > 1 { return BreakGlassError(.invalidRequest, "send one Host header, not several") }
        if contentLengths > 1 { return BreakGlassError(.invalidRequest, "send one Content-Length header, not several") }
        if !lengthIsNumber { return BreakGlassError(.invalidRequest, "Content-Length must be a number of bytes") }
        if let transferEncoding {
            if contentLengths > 0 {
                return BreakGlassError(.invalidRequest, "send Content-Length or Transfer-Encoding, not both")
            }
            if head.version.major < 1 || (head.version.major == 1 && head.version.minor == 0) {
                return BreakGlassError(.invalidRequest, "Transfer-Encoding needs HTTP/1.1")
            }
            if transferEncodings > 1 { return BreakGlassError(.invalidRequest, "send one Transfer-Encoding header, not several") }
            let codings = transferEncoding.split(separator: ",").map { trimmed($0, blank: isBlank).lowercased() }
            if codings != ["chunked"] {
                if codings.allSatisfy({ $0 == "chunked" }) {
                    return BreakGlassError(.invalidRequest, "a body is chunked once, not twice")
                }
                return BreakGlassError(.notImplemented, "the only transfer coding understood is chunked")
            }
        }
        return nil
    }

    /// The client's trailers as sent upstream: those its headers would lose go, and those that
    /// frame, route, authenticate or say how to read the content (RFC 9110 §6.5.1). Nil for none.
    public static func upstreamTrailers(_ trailers: HTTPHeaders?) -> HTTPHeaders? {
        guard let trailers, trailers.count > 0 else { return nil }
        var kept = HTTPHeaders()
        for (name, value) in trailers where !droppedTrailers.contains(name) && !hasLineBreakOrNUL(name) && !hasLineBreakOrNUL(value) {
            kept.add(name: name, value: value)
        }
        return kept.count > 0 ? kept : nil
    }

    /// Whether a request with this method has content that means something when present (RFC 9110 §9.3).
    static func definesContent(_ method: HTTPMethod) -> Bool {
        method == .POST || method == .PUT || method == .PATCH
    }

    /// A `Content-Length` value as a number: digits only (blanks around them aside), at most 18.
    static func contentLength(_ value: String) -> Int? {
        let digits = trimmed(value.utf8) { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var length = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return length
    }

    static func isBlank(_ character: Character) -> Bool { character == " " || character == "\t" }

    /// `text` without the blanks around it.
    static func trimmed<Text: BidirectionalCollection>(_ text: Text, blank: (Text.Element) -> Bool) -> Text.SubSequence {
        guard let first = text.firstIndex(where: { !blank($0) }), let last = text.lastIndex(where: { !blank($0) }) else {
            return text[text.endIndex...]
        }
        return text[first...last]
    }

    static func hasLineBreakOrNUL(_ text: String) -> Bool {
        text.utf8.contains { $0 == 0 || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }
    }

    /// The response head sent to the client.
    public static func clientResponse(_ head: HTTPResponseHead, keepAlive: Bool) -> HTTPResponseHead {
        let connection = keepAlive ? "keep-alive" : "close"
        // Most answers carry no hop-by-hop header but a `Connection` with the very value the client
        // is to get: they pass as they are, without building the headers again.
        if head.version == .http1_1 {
            var connectionAsWanted = false
            var otherHopByHop = false
            for (name, value) in head.headers where droppedDownstream.contains(name) {
                guard !connectionAsWanted, connectionName.contains(name), value.utf8.count == connection.utf8.count,
                    value.lowercased() == connection
                else {
                    otherHopByHop = true
                    break
                }
                connectionAsWanted = true
            }
            if !otherHopByHop {
                if connectionAsWanted { return head }
                var answer = head
                answer.headers.add(name: "Connection", value: connection)
                return answer
            }
        }
        var headers = removingHopByHop(head.headers)
        headers.add(name: "Connection", value: connection)
        return HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)
    }

    /// A `101 Switching Protocols` head as raw bytes, for writing after the HTTP codec is gone.
    public static func switchingProtocols(_ head: HTTPResponseHead) -> ByteBuffer {
        var headers = removingHopByHop(head.headers)
        headers.add(name: "Connection", value: "Upgrade")
        headers.add(name: "Upgrade", value: "websocket")
        var buffer = ByteBuffer()
        buffer.writeString("HTTP/1.1 101 Switching Protocols\r\n")
        for (name, value) in headers { buffer.writeString("\(name): \(value)\r\n") }
        buffer.writeString("\r\n")
        return buffer
    }

    /// The headers without those in `dropping` and those the `Connection` header names (but never
    /// the framing, `Host` or identity headers), in one pass; room is kept for the few the gateway adds.
    static func removingHopByHop(_ headers: HTTPHeaders, dropping: HeaderNameSet = droppedDownstream) -> HTTPHeaders {
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count + 6)
        // The names a `Connection` header lists; usually it lists none ("keep-alive", "close").
        var named: [HeaderNameSet] = []
        for (name, value) in headers where connectionName.contains(name) {
            for token in value.split(separator: ",") {
                let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
                guard let first = token.firstIndex(where: { !blank($0) }), let last = token.lastIndex(where: { !blank($0) }) else {
                    continue
                }
                let name = String(token[first...last])
                if name.lowercased() != "keep-alive", name.lowercased() != "close", !keptDespiteConnection.contains(name) {
                    named.append(HeaderNameSet(CollectionOfOne(name), underscoresAsHyphens: true))
                }
            }
        }
        for (name, value) in headers {
            if dropping.contains(name) || (!named.isEmpty && named.contains { $0.contains(name) }) { continue }
            result.add(name: name, value: value)
        }
        return result
    }
}
