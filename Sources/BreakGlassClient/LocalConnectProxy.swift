import BreakGlassCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain-HTTP CONNECT proxy on a loopback address, for clients that can neither speak TLS to a
/// proxy nor send a bearer token (`ncat --proxy-type http`, tools that take only `http://` proxies):
/// each `CONNECT PATHWAY:PORT` it accepts becomes a tunnel through the gateway with the grant stored
/// for PATHWAY. Whoever can connect to it uses those grants, so it listens on loopback only.
public enum LocalConnectProxy {
    /// Largest request head taken from a local client.
    static let maximumHead = 16 << 10

    /// Listens on `address`; `connector` gives the tunnel opener for a pathway (looked up for each
    /// CONNECT, so a new login is used at once) or why there is none; `report` hears of each tunnel
    /// opened or refused.
    public static func start(
        on address: ListenAddress,
        group: any EventLoopGroup,
        connector: @escaping @Sendable (String) -> Result<TunnelConnector, ClientError>,
        report: @escaping @Sendable (String) -> Void
    ) async throws(ClientError) -> any Channel {
        var address = address
        // Resolved here, not by the system's name service: the address must stay loopback.
        if address.host == "localhost" { address.host = "127.0.0.1" }
        guard IPAddress(address.host)?.isLoopback == true else {
            throw ClientError(
                code: "not_loopback",
                message:
                    "the local proxy carries your grants, so it listens only on a loopback address (e.g. 127.0.0.1:3128), not \(address)")
        }
        do {
            return try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { local in
                    local.eventLoop.makeCompletedFuture {
                        try local.pipeline.syncOperations.addHandler(LocalConnectHandler(connector: connector, report: report))
                    }
                }
                .bind(host: address.host, port: address.port)
                .get()
        } catch {
            throw ClientError(code: "cannot_listen", message: "cannot listen on \(address): \(error)")
        }
    }
}

/// Reads one CONNECT request head from a local client, opens the tunnel, answers, and glues the
/// two; anything else gets an HTTP error that says what to do, and the connection closes.
final class LocalConnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Reading the request head.
        case head
        /// The tunnel is being opened; the client's bytes are held (reads are off).
        case opening
        /// Answered with an error; nothing more is read.
        case refused
        /// Glued: bytes pass through.
        case glued
    }

    private let connector: @Sendable (String) -> Result<TunnelConnector, ClientError>
    private let report: @Sendable (String) -> Void
    private var state = State.head
    private var received = ByteBuffer()
    /// The client closed its side while the tunnel was opening: passed on once glued.
    private var inputClosed = false

    init(connector: @escaping @Sendable (String) -> Result<TunnelConnector, ClientError>, report: @escaping @Sendable (String) -> Void) {
        self.connector = connector
        self.report = report
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .glued:
            context.fireChannelRead(data)
            return
        case .refused:
            return
        case .head, .opening:
            var buffer = unwrapInboundIn(data)
            received.writeBuffer(&buffer)
        }
        guard case .head = state else { return }
        let view = received.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else {
            if received.readableBytes > LocalConnectProxy.maximumHead {
                refuse(context, status: .requestHeaderFieldsTooLarge, "the request head is larger than 16 KiB")
            }
            return
        }
        guard view.distance(from: view.startIndex, to: end.upperBound) <= LocalConnectProxy.maximumHead else {
            refuse(context, status: .requestHeaderFieldsTooLarge, "the request head is larger than 16 KiB")
            return
        }
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        received.moveReaderIndex(forwardBy: view.distance(from: view.startIndex, to: end.upperBound))
        let line = head.split(separator: "\r\n", omittingEmptySubsequences: false).first ?? ""
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            refuse(context, status: .badRequest, "not an HTTP/1 request line: \(line.prefix(80))")
            return
        }
        guard parts[0] == "CONNECT" else {
            refuse(
                context, status: .methodNotAllowed,
                "this local proxy only opens tunnels to tcp pathways (CONNECT PATHWAY:PORT); http pathways are at https://GATEWAY/p/PATHWAY/"
            )
            return
        }
        guard let pathway = Self.pathway(parts[1]) else {
            refuse(context, status: .badRequest, "CONNECT needs PATHWAY:PORT, e.g. CONNECT db-primary:5432 (got \(parts[1].prefix(80)))")
            return
        }
        state = .opening
        // Held bytes stay bounded: nothing more is read until the tunnel is glued.
        let channel = context.channel
        channel.setOption(.autoRead, value: false).whenFailure { _ in channel.close(promise: nil) }
        // The grant is read from the token store (and the CA file loaded) off the event loop.
        let connector = self.connector
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { connector(pathway) }.whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .success(.success(let opener)):
                opener.open(on: context.eventLoop).whenComplete { opened in
                    let (handler, context) = loopBound.value
                    handler.opened(context: context, pathway: pathway, opened)
                }
            case .success(.failure(let error)):
                handler.refuse(context, status: .forbidden, error.message)
                handler.report("refused CONNECT \(pathway): \(error.message)")
            case .failure(let error):
                handler.refuse(context, status: .internalServerError, "cannot look up the grant for \(pathway): \(error)")
            }
        }
    }

    private func opened(context: ChannelHandlerContext, pathway: String, _ result: Result<any Channel, any Error>) {
        switch result {
        case .failure(let error):
            let failure = error as? ClientError
            // The gateway's 401 or 407 would make the client ask for proxy credentials it does not have.
            let status =
                failure?.httpStatus.map { [401, 407].contains($0) ? .forbidden : HTTPResponseStatus(statusCode: $0) } ?? .badGateway
            let message = failure?.message ?? "cannot open a tunnel to \(pathway): \(error)"
            refuse(context, status: status, message)
            if failure?.httpStatus == 401 {
                // The gateway refused the token itself: the grant was released, revoked or has expired.
                // Other pathways' grants may still be good, so the proxy keeps serving; a new login
                // for this one is used at once.
                report(
                    "the grant for \(pathway) has ended (\(message)); CONNECT \(pathway) is refused until "
                        + "breakglass login \(pathway) gets a new grant; other pathways are still served")
            } else {
                report("refused CONNECT \(pathway): \(message)")
            }
        case .success(let tunnel):
            guard context.channel.isActive else {
                tunnel.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")), promise: nil)
            do {
                try TunnelConnector.glue(tunnel, to: context.channel)
                state = .glued
                // What the client sent after its head goes on to the tunnel as this handler leaves.
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                report("tunnel to \(pathway) opened")
            } catch {
                tunnel.close(promise: nil)
                context.close(promise: nil)
            }
        }
    }

    func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if received.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(received))
            context.fireChannelReadComplete()
        }
        received = ByteBuffer()
        if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        context.leavePipeline(removalToken: removalToken)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch state {
        case .head:
            // Gone before asking for anything.
            context.close(promise: nil)
        case .opening:
            inputClosed = true
        case .glued:
            context.fireUserInboundEventTriggered(event)
        case .refused:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func refuse(_ context: ChannelHandlerContext, status: HTTPResponseStatus, _ message: String) {
        state = .refused
        received = ByteBuffer()
        let body = message + "\n"
        let head =
            "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: head + body))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The pathway named by a CONNECT target `PATHWAY:PORT`; nil unless it looks like a pathway name.
    static func pathway(_ target: Substring) -> String? {
        guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        let name = target[..<colon]
        let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
        return !name.isEmpty && name.count <= 64 && allowed ? String(name) : nil
    }
}
