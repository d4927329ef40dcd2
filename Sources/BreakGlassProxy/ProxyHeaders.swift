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
        headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
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
        var headers = removingHopByHop(head.headers)
        for name in gatewayOwned { headers.remove(name: name) }
        headers.remove(name: "host")
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
        var headers = removingHopByHop(head.headers)
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
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

    /// Removes the hop-by-hop headers and every header the `Connection` header names.
    static func removingHopByHop(_ headers: HTTPHeaders) -> HTTPHeaders {
        var result = headers
        for value in headers[canonicalForm: "connection"] { result.remove(name: String(value)) }
        for name in hopByHop { result.remove(name: name) }
        return result
    }
}
