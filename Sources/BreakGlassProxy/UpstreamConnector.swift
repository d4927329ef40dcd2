import BreakGlassCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Connections to pathways' upstreams: new ones through the pool's caps (with TLS and the HTTP
/// client codec for http pathways), their TLS contexts, and the words for their failures.
package final class UpstreamConnector: Sendable {
    /// Idle and in-use upstream connections.
    package let pool: UpstreamPool
    private let upstreamTLS = Mutex<[String: NIOSSLContext]>([:])

    /// A connector with an empty pool.
    package init() {
        self.pool = UpstreamPool()
    }

    /// A new connection to an http pathway's upstream on `eventLoop`, counted in the pool, with the
    /// HTTP client codec installed (a kept-alive one is taken from the pool before this).
    /// `forUpgrade`: made for a WebSocket upgrade, whose decoder hands the bytes after the `101` on
    /// to the tunnel; such a connection is never pooled.
    package func httpUpstream(_ pathway: Pathway, forUpgrade: Bool, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let upstream = pathway.upstream
        let tls: NIOSSLContext?
        do {
            tls = upstream.scheme == .https ? try tlsContext(pathway) : nil
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return pool.open(
            pathway: pathway.name, destination: Self.poolDestination(pathway), limit: pathway.proxy.maxConnections, on: eventLoop
        ) {
            ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(pathway.proxy.connectTimeout))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        if let tls {
                            let name = IPAddress(upstream.host) == nil ? upstream.host : nil
                            try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                        }
                        // The gateway frames every request itself (`ProxyHeaders.upstreamRequest`):
                        // NIO's encoder would frame a body only for some methods.
                        var encoding = HTTPRequestEncoder.Configuration()
                        encoding.automaticallySetFramingHeaders = false
                        try sync.addHandler(HTTPRequestEncoder(configuration: encoding))
                        let decoder = UpstreamResponseDecoder(forUpgrade: forUpgrade)
                        try sync.addHandler(ByteToMessageHandler(decoder))
                        // Right after the decoder: it tells the decoder each part as it arrives
                        // (`UpstreamResponseDecoder.delivered`).
                        try sync.addHandler(UpstreamHTTPHandler(decoder: decoder))
                    }
                }
                .connect(host: upstream.host, port: upstream.port)
        }
    }

    /// A new TCP connection to a tcp pathway's upstream; it reads nothing until glued.
    package func tcpUpstream(_ pathway: Pathway, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        pool.open(pathway: pathway.name, destination: Self.poolDestination(pathway), limit: pathway.proxy.maxConnections, on: eventLoop) {
            ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(pathway.proxy.connectTimeout))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelOption(.autoRead, value: false)
                .connect(host: pathway.upstream.host, port: pathway.upstream.port)
        }
    }

    /// Where a pathway's upstream connections go, for the pool: the upstream and the CA that checks
    /// it, so that after a reload that moves the pathway, connections to the old upstream are not
    /// handed out for the new one.
    package static func poolDestination(_ pathway: Pathway) -> String {
        pathway.upstream.description + "\u{0}" + (pathway.proxy.upstreamCA ?? "")
    }

    /// The TLS client context for an https pathway (its `upstream_ca`, or the system roots).
    private func tlsContext(_ pathway: Pathway) throws -> NIOSSLContext {
        let key = pathway.name + "\u{0}" + (pathway.proxy.upstreamCA ?? "")
        if let context = upstreamTLS.withLock({ $0[key] }) { return context }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let ca = pathway.proxy.upstreamCA {
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
        }
        let context = try NIOSSLContext(configuration: configuration)
        upstreamTLS.withLock { $0[key] = context }
        return context
    }

    /// The client-facing error for a failed upstream connection.
    package func upstreamError(_ error: any Error, pathway: Pathway) -> BreakGlassError {
        if case UpstreamPool.Refusal.busy(let limit) = error {
            return BreakGlassError(
                .upstreamBusy, "pathway \(pathway.name) already has \(limit) upstream connections (max_connections)", retryAfterSeconds: 1)
        }
        if case ChannelError.connectTimeout = error {
            return BreakGlassError(
                .upstreamTimeout,
                "pathway \(pathway.name): \(pathway.upstream) did not accept a connection within \(pathway.proxy.connectTimeout.policyText)"
            )
        }
        return BreakGlassError(
            .upstreamUnreachable, "pathway \(pathway.name): cannot connect to \(pathway.upstream): \(Self.reason(error))")
    }

    /// A short reason for a failed upstream connection ("Connection refused", "TLS: …").
    package static func reason(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError,
            let io = connection.connectionErrors.compactMap({ $0.error as? IOError }).first
        {
            return String(cString: strerror(io.errnoCode))
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let tls = error as? NIOSSLError { return "TLS failed (\(tls))" }
        if let tls = error as? BoringSSLError { return "TLS failed (\(tls))" }
        return "\(error)"
    }
}
