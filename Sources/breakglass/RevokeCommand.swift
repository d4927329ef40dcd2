import ArgumentParser
import BreakGlassClient
import BreakGlassConfig
import BreakGlassCore
import Foundation

/// Where the admin socket is: --socket, or the policy's (gateway.admin_socket or admin.sock in the audit folder).
struct AdminSocketOptions: ParsableArguments {
    @Option(name: .long, help: "The gateway's policy file; the admin socket path is read from it.")
    var config: String?

    @Option(name: .long, help: "The admin socket path (instead of --config).")
    var socket: String?

    func client() throws -> AdminClient {
        if let socket { return AdminClient(socketPath: socket) }
        guard let config else { throw CLIFailure(message: "pass --config POLICY (or --socket PATH) to find the gateway's admin socket") }
        do {
            let loaded = try PolicyLoader.load(path: config)
            guard let path = loaded.policy.gateway.adminSocketPath else {
                throw CLIFailure(message: "\(config) names no admin socket and no audit folder")
            }
            return AdminClient(socketPath: path)
        } catch let failure as CLIFailure {
            throw failure
        } catch {
            throw CLIFailure(message: "\(error)")
        }
    }
}

struct RevokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Operators: end grants at once (one session, a user's, or all); their connections are cut.",
        discussion: "Talks to the gateway's admin socket on this machine; the socket's file permissions decide who may."
    )

    @OptionGroup var admin: AdminSocketOptions

    @Option(name: .long, help: "Revoke this session.")
    var session: String?

    @Option(name: .long, help: "Revoke every live session of this user.")
    var user: String?

    @Flag(name: .long, help: "Revoke every live session.")
    var all = false

    @Option(name: .long, help: "Why (recorded in the audit log).")
    var reason: String?

    func run() async throws {
        try await reporting {
            let targets: [AdminClient.Target] =
                [session.map { .session($0) }, user.map { .user($0) }, all ? .all : nil].compactMap { $0 }
            guard targets.count == 1, let target = targets.first else {
                throw CLIFailure(message: "name exactly one of --session ID, --user NAME or --all")
            }
            let client = try admin.client()
            let operatorName = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"]
            do throws(ClientError) {
                let revoked = try await client.revoke(target, operator: operatorName, reason: reason)
                if revoked.isEmpty {
                    print("Nothing to revoke: no live session matched.")
                }
                for row in revoked {
                    print("Revoked: session \(row.session) (\(row.user) on \(row.pathway)), \(row.connections) connection(s) cut")
                }
            } catch {
                throw CLIFailure(message: error.message)
            }
        }
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "Operators: list live sessions (who, pathway, expiry, open connections) from the gateway's admin socket."
    )

    @OptionGroup var admin: AdminSocketOptions

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() async throws {
        try await reporting {
            let client = try admin.client()
            do throws(ClientError) {
                let sessions = try await client.sessions()
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    encoder.dateEncodingStrategy = .iso8601
                    print(String(decoding: (try? encoder.encode(sessions)) ?? Data("[]".utf8), as: UTF8.self))
                    return
                }
                guard !sessions.isEmpty else {
                    print("No live sessions.")
                    return
                }
                print("SESSION                           USER         PATHWAY              EXPIRES (local)              CONNECTIONS")
                for row in sessions {
                    print(
                        [
                            row.session.padding(toLength: 33, withPad: " ", startingAt: 0),
                            row.user.padding(toLength: 12, withPad: " ", startingAt: 0),
                            row.pathway.padding(toLength: 20, withPad: " ", startingAt: 0),
                            TimeFormat.local(row.expiresAt).padding(toLength: 28, withPad: " ", startingAt: 0),
                            String(row.connections),
                        ].joined(separator: " "))
                }
            } catch {
                throw CLIFailure(message: error.message)
            }
        }
    }
}
