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
    /// are dropped.
    static let gatewayOwned: Set<String> = [
        "authorization", "expect", "x-breakglass-user", "x-breakglass-session", "x-forwarded-for", "x-forwarded-proto",
        "x-forwarded-host", "forwarded",
    ]

    /// What a response loses on its way to the client.
    static let droppedDownstream = HeaderNameSet(hopByHop)
    static let connectionName = HeaderNameSet(["connection"])
    /// What a client's request loses on its way upstream: the hop-by-hop headers, the gateway's own
    /// headers and `Host` (set to the upstream's).
    static let droppedUpstream = HeaderNameSet(hopByHop.union(gatewayOwned).union(["host"]))

    /// Who the request is from, as the upstream is told.
    public struct Identity: Sendable {
        public var user: String
        public var session: String
        public var clientAddress: String?

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
    /// authority, and the identity headers are added.
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
        if webSocket {
            headers.add(name: "Connection", value: "Upgrade")
            headers.add(name: "Upgrade", value: "websocket")
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: headers)
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

    /// The headers without those in `dropping` and those the `Connection` header names, in one
    /// pass; room is kept for the few the gateway adds.
    static func removingHopByHop(_ headers: HTTPHeaders, dropping: HeaderNameSet = droppedDownstream) -> HTTPHeaders {
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count + 6)
        // The names a `Connection` header lists; usually it lists none ("keep-alive", "close").
        var named: [String] = []
        for (name, value) in headers where connectionName.contains(name) {
            for token in value.split(separator: ",") {
                let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
                guard let first = token.firstIndex(where: { !blank($0) }), let last = token.lastIndex(where: { !blank($0) }) else {
                    continue
                }
                let name = token[first...last].lowercased()
                if name != "keep-alive", name != "close" { named.append(name) }
            }
        }
        for (name, value) in headers {
            if dropping.contains(name) || (!named.isEmpty && named.contains(name.lowercased())) { continue }
            result.add(name: name, value: value)
        }
        return result
    }
}
