import ArgumentParser
import BreakGlassClient
import Foundation

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print the stored token for a pathway (for curl -H \"Authorization: Bearer $(breakglass token P)\")."
    )

    @Argument(help: "The pathway.")
    var pathway: String

    func run() async throws {
        try await reporting {
            let stored: StoredGrant?
            do throws(ClientError) {
                stored = try TokenStore().load(pathway: pathway)
            } catch {
                throw CLIFailure(message: error.message)
            }
            guard let stored else {
                throw CLIFailure(message: "no grant stored for \(pathway): run breakglass login \(pathway) --reason \"...\"")
            }
            guard stored.grant.expiresAt > Date() else {
                throw CLIFailure(message: "the grant for \(pathway) expired at \(TimeFormat.local(stored.grant.expiresAt)); log in again")
            }
            print(stored.grant.token)
        }
    }
}
