import ArgumentParser
import BreakGlassClient
import BreakGlassCore
import NIOCore
import NIOPosix

struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "A local plain HTTP proxy that opens tunnels with your stored grants (for ncat and other http-proxy clients).",
        discussion: """
            breakglass proxy --listen 127.0.0.1:3128
            then    ncat --proxy 127.0.0.1:3128 --proxy-type http db-primary 5432
            or      ssh -o ProxyCommand='ncat --proxy 127.0.0.1:3128 --proxy-type http %h %p' user@bastion
            Each CONNECT PATHWAY:PORT goes to the gateway over TLS with the grant stored for PATHWAY
            (run breakglass login PATHWAY first; a new login is used at once). Loopback addresses only:
            whoever can connect to it uses your grants. Runs until Ctrl-C: when a grant is released,
            revoked or expires, a line on stderr names the pathway and why, its CONNECTs are refused
            until a new login, and the other pathways are still served.
            """
    )

    @Option(name: .long, help: "Local address to listen on (loopback only).")
    var listen = "127.0.0.1:3128"

    @Option(name: .long, help: "PEM file of the gateway's CA (default: $BREAKGLASS_CA).")
    var ca: String?

    func run() async throws {
        try await reporting {
            guard let address = ListenAddress(listen) else {
                throw CLIFailure(message: "--listen \(listen) is not HOST:PORT (e.g. 127.0.0.1:3128)")
            }
            let caFile = StoredGrantLookup.caFile(ca)
            let server: any Channel
            do throws(ClientError) {
                server = try await LocalConnectProxy.start(
                    on: address, group: MultiThreadedEventLoopGroup.singleton,
                    connector: { pathway in
                        do {
                            return .success(try StoredGrantLookup.tunnel(pathway, caFile: caFile).connector)
                        } catch {
                            return .failure(ClientError(code: "no_grant", message: "\(error)", httpStatus: 403))
                        }
                    },
                    report: { line in Console.error(line) })
            } catch {
                throw CLIFailure(message: error.message)
            }
            let bound = server.localAddress?.port ?? address.port
            print("Local proxy on \(address.host):\(bound): CONNECT PATHWAY:PORT opens a tunnel with your stored grant. Ctrl-C stops it.")
            print("e.g. ncat --proxy \(address.host):\(bound) --proxy-type http PATHWAY PORT")
            try? await server.closeFuture.get()
        }
    }
}
