import BreakGlassCore
import BreakGlassProxy
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The admin listener: HTTP/1.1 on a unix socket that only its owner (mode 0600) or, with an
/// `admin_group`, that group too (mode 0660) can open. The socket is made in a private folder and
/// moved into place with its mode set, so that it is never reachable with another mode; every
/// connecting peer is checked again with `SO_PEERCRED` (`AdminPeers`).
final class AdminServer: Sendable {
    private let channel: any Channel
    let path: String

    private init(channel: any Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    static func start(
        path: String, group adminGroup: String? = nil, router: AdminRouter, group: any EventLoopGroup, logger: Logger
    ) async throws -> AdminServer {
        let peers = try AdminPeers.resolve(group: adminGroup)
        // A socket file left by a gateway that died is replaced; anything else at the path is not.
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFSOCK {
            throw AdminSocketError(message: "\(path) exists and is not a socket")
        }
        let folder = (path as NSString).deletingLastPathComponent
        let staging = folder + "/.admin-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let staged = staging + "/s"
        guard staged.utf8.count <= 107 else {
            throw AdminSocketError(message: "\(staged) is longer than a unix socket path may be (107 bytes); set a shorter admin_socket")
        }
        guard mkdir(staging, 0o700) == 0 else {
            throw AdminSocketError(message: "cannot make \(staging): \(String(cString: strerror(errno)))")
        }
        defer { rmdir(staging) }
        let limits = HTTPLimits()
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                // Who is on the other end, from the kernel: refused peers are closed before a byte is read.
                guard let provider = channel as? any SocketOptionProvider else {
                    return channel.eventLoop.makeFailedFuture(AdminSocketError(message: "no peer credentials on the admin socket"))
                }
                let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
                return credentials.flatMapThrowing { peer in
                    guard peers.admits(uid: peer.uid, gid: peer.gid) else {
                        logger.warning(
                            "admin socket: peer refused", metadata: ["uid": "\(peer.uid)", "gid": "\(peer.gid)", "pid": "\(peer.pid)"])
                        throw AdminSocketError(message: "peer uid \(peer.uid) may not use the admin socket")
                    }
                    let sync = channel.pipeline.syncOperations
                    let http = HTTPServerHandlers(limits: GatewayLimits())
                    try sync.addHandlers([http.deadlines, http.encoder, http.decoder])
                    try sync.addHandler(
                        GatewayChannelHandler(route: { await router.route($0) }, proxy: nil, limits: limits, handlers: http))
                }
            }
            .bind(unixDomainSocketPath: staged)
            .get()
        do {
            // Nobody can reach the socket in its 0700 folder: its mode and group are set there, then
            // it moves into place.
            if let groupID = peers.groupID {
                guard chown(staged, uid_t.max, groupID) == 0 else { throw AdminSocketError(message: Self.failure("chown", staged)) }
            }
            guard chmod(staged, peers.groupID == nil ? 0o600 : 0o660) == 0 else {
                throw AdminSocketError(message: Self.failure("chmod", staged))
            }
            guard rename(staged, path) == 0 else { throw AdminSocketError(message: Self.failure("rename to \(path)", staged)) }
        } catch {
            try? await channel.close()
            unlink(staged)
            throw error
        }
        logger.notice("admin socket listening", metadata: ["path": "\(path)", "group": "\(adminGroup ?? "-")"])
        return AdminServer(channel: channel, path: path)
    }

    private static func failure(_ call: String, _ path: String) -> String {
        "\(call) \(path) failed: \(String(cString: strerror(errno)))"
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
