import ArgumentParser
import BreakGlassClient
import Foundation

struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "End my grant for a pathway now: the gateway cuts its connections and records the release."
    )

    @Argument(help: "The pathway.")
    var pathway: String

    @Option(name: .long, help: "PEM file of the gateway's CA (default: $BREAKGLASS_CA).")
    var ca: String?

    func run() async throws {
        try await reporting {
            let stored = try StoredGrantLookup.live(pathway)
            let client: GatewayClient
            do throws(ClientError) {
                client = try GatewayClient(gateway: stored.gateway, caFile: StoredGrantLookup.caFile(ca))
            } catch {
                throw CLIFailure(message: error.message)
            }
            let grant = stored.grant
            let result = await client.withShutdown { client throws(ClientError) in
                try await client.releaseGrant(session: grant.session, token: grant.token)
            }
            switch result {
            case .success:
                TokenStore().remove(pathway: pathway)
                print("Released: pathway \(pathway), session \(grant.session). Its connections are closed.")
            case .failure(let error) where error.code == "invalid_token":
                TokenStore().remove(pathway: pathway)
                print("The grant for \(pathway) had already ended (\(error.message)); removed it here too.")
            case .failure(let error):
                throw CLIFailure(message: "could not release the grant: \(error.message)")
            }
        }
    }
}
