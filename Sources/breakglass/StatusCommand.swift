import ArgumentParser
import BreakGlassAPI
import BreakGlassClient
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "List my stored grants with the time left, confirmed with the gateway unless --offline."
    )

    @Flag(name: .long, help: "Do not ask the gateway; show only what is stored locally.")
    var offline = false

    @Option(name: .long, help: "PEM file of the gateway's CA (default: $BREAKGLASS_CA).")
    var ca: String?

    func run() async throws {
        try await reporting {
            let grants = TokenStore().all()
            guard !grants.isEmpty else {
                print("No grants stored. Get one with: breakglass login PATHWAY --reason \"...\"")
                return
            }
            let now = Date()
            print("PATHWAY              USER         SESSION                           EXPIRES (local)              LEFT      GATEWAY SAYS")
            for stored in grants {
                let grant = stored.grant
                var verdict = "-"
                if !offline && grant.expiresAt > now {
                    verdict = await check(stored)
                } else if grant.expiresAt <= now {
                    verdict = "expired"
                }
                let row = [
                    grant.pathway.padding(toLength: 20, withPad: " ", startingAt: 0),
                    grant.user.padding(toLength: 12, withPad: " ", startingAt: 0),
                    grant.session.padding(toLength: 33, withPad: " ", startingAt: 0),
                    TimeFormat.local(grant.expiresAt).padding(toLength: 28, withPad: " ", startingAt: 0),
                    TimeFormat.remaining(until: grant.expiresAt, now: now).padding(toLength: 9, withPad: " ", startingAt: 0),
                    verdict,
                ]
                print(row.joined(separator: " "))
            }
        }
    }

    private func check(_ stored: StoredGrant) async -> String {
        let caFile = StoredGrantLookup.caFile(ca)
        let client: GatewayClient
        do {
            client = try GatewayClient(gateway: stored.gateway, caFile: caFile, timeout: .seconds(5))
        } catch {
            return "\(error.code): \(error.message)"
        }
        let token = stored.grant.token
        switch await client.withShutdown({ client throws(ClientError) in try await client.currentGrant(token: token) }) {
        case .success(let status):
            // Without `state` (a gateway from before it) the answer says only that the token verifies.
            guard let state = status.state, state != "active" else { return "valid (\(status.expiresInSeconds)s left)" }
            return "\(state): the gateway refuses this grant; log in again for new access"
        case .failure(let error): return "\(error.code): \(error.message)"
        }
    }
}
