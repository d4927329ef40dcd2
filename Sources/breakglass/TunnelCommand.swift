import ArgumentParser
import BreakGlassClient
import BreakGlassCore
import Foundation
import NIOCore
import NIOPosix

struct TunnelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunnel",
        abstract: "Listen locally and carry each connection through the gateway to a tcp pathway (e.g. for psql).",
        discussion: """
            breakglass tunnel db-primary --listen 127.0.0.1:15432    then    psql -h 127.0.0.1 -p 15432
            Runs until the grant expires or Ctrl-C; every accepted connection is one CONNECT tunnel.
            """
    )

    @Argument(help: "The pathway (kind tcp).")
    var pathway: String

    @Option(name: .long, help: "Local address to listen on (default 127.0.0.1:0, a free port).")
    var listen = "127.0.0.1:0"

    @Option(name: .long, help: "PEM file of the gateway's CA (default: $BREAKGLASS_CA).")
    var ca: String?

    func run() async throws {
        try await reporting {
            guard let address = ListenAddress(listen) else {
                throw CLIFailure(message: "--listen \(listen) is not HOST:PORT (e.g. 127.0.0.1:15432)")
            }
            let (stored, connector) = try StoredGrantLookup.tunnel(pathway, caFile: StoredGrantLookup.caFile(ca))
            let pathway = self.pathway
            // A refusal of the grant itself (released, revoked, expired) ends the tunnel: no later
            // connection could get through with it.
            let (grantEnded, endGrant) = AsyncStream.makeStream(of: String.self)
            let server: any Channel
            do {
                server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.autoRead, value: false)
                    .childChannelOption(.allowRemoteHalfClosure, value: true)
                    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { local in
                        connector.open(on: local.eventLoop).whenComplete { result in
                            switch result {
                            case .success(let tunnel):
                                do {
                                    try TunnelConnector.glue(tunnel, to: local)
                                } catch {
                                    tunnel.close(promise: nil)
                                    local.close(promise: nil)
                                }
                            case .failure(let error):
                                let refusal = error as? ClientError
                                Console.error(TunnelFailure.words(pathway: pathway, error))
                                local.close(promise: nil)
                                // 401 is the gateway refusing the token (invalid_token): the grant has ended.
                                if refusal?.httpStatus == 401 { endGrant.yield(refusal?.message ?? "the grant is no longer valid") }
                            }
                        }
                        return local.eventLoop.makeSucceededVoidFuture()
                    }
                    .bind(host: address.host, port: address.port)
                    .get()
            } catch {
                throw CLIFailure(message: "cannot listen on \(listen): \(error)")
            }
            let bound = server.localAddress?.port ?? address.port
            let expires = stored.grant.expiresAt
            print(
                "Tunnel to \(pathway) listening on \(address.host):\(bound) until \(TimeFormat.local(expires)) (grant expiry). Ctrl-C stops it."
            )
            print("Connect your client to \(address.host) port \(bound), e.g. psql -h \(address.host) -p \(bound)")
            let remaining = expires.timeIntervalSinceNow
            let refused: String? = await withTaskGroup(of: String?.self) { group in
                group.addTask {
                    if remaining > 0 { try? await Task.sleep(for: .milliseconds(Int64(remaining * 1000))) }
                    return nil
                }
                group.addTask {
                    for await message in grantEnded { return message }
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            try? await server.close()
            if let refused {
                throw CLIFailure(message: "the tunnel to \(pathway) stopped: \(refused)", exitCode: 2)
            }
            throw CLIFailure(message: "the grant for \(pathway) expired; log in again for more time", exitCode: 2)
        }
    }
}

struct ConnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Carry standard input and output through the gateway to a tcp pathway (for ssh ProxyCommand).",
        discussion: "ssh -o ProxyCommand='breakglass connect bastion' user@bastion"
    )

    @Argument(help: "The pathway (kind tcp).")
    var pathway: String

    @Option(name: .long, help: "PEM file of the gateway's CA (default: $BREAKGLASS_CA).")
    var ca: String?

    func run() async throws {
        try await reporting {
            let connector = try StoredGrantLookup.tunnel(pathway, caFile: StoredGrantLookup.caFile(ca)).connector
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let tunnel: any Channel
            do {
                tunnel = try await connector.open(on: loop).get()
            } catch {
                throw CLIFailure(message: TunnelFailure.words(pathway: pathway, error))
            }
            // epoll cannot watch a regular file (`< file`, `> file`) or /dev/null: then threads of
            // their own carry standard input and output with blocking reads and writes.
            guard BlockingStdioBridge.isPollable(0), BlockingStdioBridge.isPollable(1) else {
                // A write to a closed pipe fails with EPIPE instead of ending the process.
                signal(SIGPIPE, SIG_IGN)
                let bridge: BlockingStdioBridge
                do {
                    bridge = try await tunnel.eventLoop.submit {
                        try BlockingStdioBridge.start(tunnel: tunnel, input: dup(0), output: dup(1))
                    }.get()
                } catch {
                    tunnel.close(promise: nil)
                    throw CLIFailure(message: "cannot carry standard input and output: \(error)")
                }
                try? await tunnel.closeFuture.get()
                // What the tunnel sent is in the output file before the command ends.
                await bridge.finished()
                if let failure = bridge.failure { throw CLIFailure(message: failure) }
                return
            }
            do {
                // The glue goes in as the pipe channel is made, so it reads from its first byte.
                let pipe = try await NIOPipeBootstrap(group: loop)
                    .channelOption(.allowRemoteHalfClosure, value: true)
                    .channelInitializer { pipe in pipe.eventLoop.makeCompletedFuture { try TunnelConnector.glue(tunnel, to: pipe) } }
                    .takingOwnershipOfDescriptors(input: dup(0), output: dup(1))
                    .get()
                try await tunnel.closeFuture.get()
                try? await pipe.close()
            } catch {
                tunnel.close(promise: nil)
                throw CLIFailure(message: "cannot carry standard input and output: \(error)")
            }
        }
    }
}

/// How a tunnel that did not open is told: a gateway's refusal says "refused", anything else
/// (no connection, an untrusted certificate) says what happened on the way.
enum TunnelFailure {
    static func words(pathway: String, _ error: any Error) -> String {
        guard let failure = error as? ClientError else { return "no tunnel to \(pathway): \(error)" }
        if failure.httpStatus != nil { return "tunnel to \(pathway) refused: \(failure.message)" }
        return "no tunnel to \(pathway): \(failure.message)"
    }
}
