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
            print(try StoredGrantLookup.live(pathway).grant.token)
        }
    }
}
