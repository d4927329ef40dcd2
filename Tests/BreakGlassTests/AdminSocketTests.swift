import BreakGlassTestSupport
import Foundation
import Testing

@testable import BreakGlassGateway

/// The operators' unix socket (issue #17 item 3): private from its first moment, and every peer is
/// checked with `SO_PEERCRED` whatever the socket's mode. Other users are played by `nobody`
/// (the tests run as root, and `setpriv` drops to another uid).
@Suite struct AdminSocketTests {
    @Test func peersAreRootTheGatewaysUserAndTheAdminGroup() {
        let alone = AdminPeers(ownUID: 1000, groupID: nil, memberUIDs: [])
        #expect(alone.admits(uid: 0, gid: 0))
        #expect(alone.admits(uid: 1000, gid: 1000))
        #expect(!alone.admits(uid: 1001, gid: 1000))
        let grouped = AdminPeers(ownUID: 1000, groupID: 50, memberUIDs: [1002])
        #expect(grouped.admits(uid: 1001, gid: 50), "primary group")
        #expect(grouped.admits(uid: 1002, gid: 7), "listed member")
        #expect(!grouped.admits(uid: 1003, gid: 7))
    }

    @Test func anUnknownAdminGroupIsAnError() {
        #expect(throws: AdminSocketError.self) { try AdminPeers.resolve(group: "no-such-group-\(UInt32.random(in: 0...UInt32.max))") }
        #expect((try? AdminPeers.resolve(group: "nogroup"))?.groupID == 65534)
    }

    /// `curl` over the admin socket as `uid` (nil: as this process); the HTTP status, 0 for none.
    static func status(socket: String, as uid: UInt32?) async throws -> Int {
        let curl = try #require(ProcessRunner.which("curl"))
        let request = [
            "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--unix-socket", socket, "http://admin/v1/admin/health",
        ]
        let result: ProcessRunner.Result
        if let uid {
            let setpriv = try #require(ProcessRunner.which("setpriv"))
            result = try await ProcessRunner.run(setpriv, ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", curl] + request)
        } else {
            result = try await ProcessRunner.run(curl, request)
        }
        return Int(result.stdout) ?? 0
    }

    /// Lets other users reach `socket` through its folders (the test's own folders are private).
    static func openFolders(to socket: String, in top: String) {
        var folder = (socket as NSString).deletingLastPathComponent
        while folder.hasPrefix(top) {
            chmod(folder, 0o755)
            folder = (folder as NSString).deletingLastPathComponent
        }
    }

    @Test func theSocketIsPrivateAndAnotherUserIsRefusedEvenWhenItsModeLetsThemIn() async throws {
        let gateway = try await TestGateway(durableAudit: true)
        defer { Task { await gateway.stop() } }
        let socket = gateway.directory.file("audit/admin.sock")
        var info = stat()
        #expect(lstat(socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: gateway.directory.file("audit")).filter {
            $0.hasPrefix(".admin-")
        }
        #expect(leftovers.isEmpty, "\(leftovers)")

        #expect(try await Self.status(socket: socket, as: nil) == 200)
        // As if a careless chmod or umask had opened it: the peer check still refuses nobody.
        Self.openFolders(to: socket, in: gateway.directory.path)
        chmod(socket, 0o666)
        #expect(try await Self.status(socket: socket, as: 65534) == 0)
        #expect(try await Self.status(socket: socket, as: nil) == 200)
    }

    @Test func membersOfTheAdminGroupMayUseIt() async throws {
        let gateway = try await TestGateway(durableAudit: true, gatewayKeys: "admin_group: nogroup")
        defer { Task { await gateway.stop() } }
        let socket = gateway.directory.file("audit/admin.sock")
        var info = stat()
        #expect(lstat(socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(info.st_gid == 65534)
        Self.openFolders(to: socket, in: gateway.directory.path)
        #expect(try await Self.status(socket: socket, as: 65534) == 200)
    }
}
