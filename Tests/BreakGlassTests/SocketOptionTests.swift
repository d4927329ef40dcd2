import BreakGlassCore
import BreakGlassProxy
import BreakGlassTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

/// TCP options are set at the TCP level. `.socketOption(.tcp_nodelay)` names option 1 at the socket
/// level, which is `SO_DEBUG` (NIO turns `TCP_NODELAY` on by default, so only that showed): for a
/// gateway without `CAP_NET_ADMIN` (the packaged service) every accepted connection failed its set-up
/// and was reset, and its probes and upstream connections could not connect.
@Suite struct SocketOptionTests {
    @Test func upstreamConnectionsHaveNoDelayAndNoDebug() async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = listener.localAddress?.port else { throw TestSupportError("the listener did not bind") }
        let pathway = Pathway(
            name: "db", kind: .tcp, upstream: Upstream(scheme: .tcp, host: "127.0.0.1", port: port), allowUsers: ["alice"],
            allowGroups: [], defaultDuration: .seconds(60), maxDuration: .seconds(60))
        let connector = UpstreamConnector()
        let channel = try await connector.tcpUpstream(pathway, on: MultiThreadedEventLoopGroup.singleton.next()).get()
        let noDelay = try await channel.getOption(.tcpOption(.tcp_nodelay)).get()
        let debug = try await channel.getOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_DEBUG))).get()
        #expect(noDelay != 0, "TCP_NODELAY is off")
        #expect(debug == 0, "SO_DEBUG is on")
        try? await channel.close()
        try? await listener.close()
    }

    /// Every place that sets a TCP option names the TCP level (a new one copied from an old habit
    /// would set a socket-level option of the same number).
    @Test func noTCPOptionIsSetAtTheSocketLevel() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let files = try #require(FileManager.default.enumerator(atPath: sources.path)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50)
        var offenders: [String] = []
        for file in files {
            let text = try String(contentsOfFile: sources.appendingPathComponent(file).path, encoding: .utf8)
            if text.contains("socketOption(.tcp_") { offenders.append(file) }
        }
        #expect(offenders.isEmpty, "TCP options set at the socket level in \(offenders)")
    }
}
