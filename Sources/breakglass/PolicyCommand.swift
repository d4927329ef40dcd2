import ArgumentParser
import BreakGlassConfig
import BreakGlassCore
import BreakGlassGateway

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Work with policy files.",
        subcommands: [Check.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a policy file as the gateway would, keys and certificates included; exit 0 when valid."
        )

        @Argument(help: "The policy file (YAML).")
        var file: String

        func run() async throws {
            try await reporting {
                do {
                    let loaded = try PolicyLoader.load(path: file)
                    _ = try await GatewayResources.load(loaded)
                    let policy = loaded.policy
                    print(
                        "\(file): valid. gateway \(policy.gateway.id) on \(policy.gateway.listen), \(policy.pathways.count) pathway(s): \(policy.pathways.keys.sorted().joined(separator: ", "))"
                    )
                    print("sha256 \(loaded.sha256)")
                } catch {
                    throw CLIFailure(message: "\(error)")
                }
            }
        }
    }
}
