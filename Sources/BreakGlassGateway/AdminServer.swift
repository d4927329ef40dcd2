import BreakGlassCore
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The admin listener: HTTP/1.1 on a unix socket that only its owner can open (mode 0600).
final class AdminServer: Sendable {
    private let channel: any Channel
    let path: String

    private init(channel: any Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    static func start(path: String, router: AdminRouter, group: any EventLoopGroup, logger: Logger) async throws -> AdminServer {
        // A socket file left by a gateway that died is replaced; anything else at the path is not.
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw AdminSocketError(message: "\(path) exists and is not a socket")
            }
            unlink(path)
        }
        let limits = HTTPLimits()
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let http = HTTPServerHandlers(limits: GatewayLimits())
                    try sync.addHandlers([http.deadlines, http.encoder, http.decoder])
                    try sync.addHandler(
                        GatewayChannelHandler(route: { await router.route($0) }, proxy: nil, limits: limits, handlers: http))
                }
            }
            .bind(unixDomainSocketPath: path)
            .get()
        // Until this chmod the socket has the mode the umask gives; the usual 022 already denies
        // others the write permission that connecting needs.
        chmod(path, 0o600)
        logger.notice("admin socket listening", metadata: ["path": "\(path)"])
        return AdminServer(channel: channel, path: path)
    }

    func shutdown() async {
        try? await channel.close()
        unlink(path)
    }
}

/// The admin socket cannot be opened.
struct AdminSocketError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
