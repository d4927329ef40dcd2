import ArgumentParser
import BreakGlassConfig
import BreakGlassCore
import BreakGlassGateway

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Work with policy files.",
        subcommands: [Check.self, Cheatsheet.self, Pathways.self]
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

    struct Cheatsheet: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the on-call commands for every pathway of a policy (login, use, logout).",
            discussion: "Reads only the policy's pathways and listen address; keys and certificates need not be present."
        )

        @Argument(help: "The policy file (YAML).")
        var file: String

        @Option(name: .long, help: "The gateway URL engineers use (default: https:// + gateway.listen).")
        var gateway: String?

        func run() async throws {
            try await reporting {
                print(try PolicyCheatsheet.read(file).render(gateway: gateway))
            }
        }
    }

    struct Pathways: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a policy's pathways, one per line: NAME KIND (for scripts such as Scripts/drill).",
            discussion: "Reads only the policy's pathways; keys and certificates need not be present."
        )

        @Argument(help: "The policy file (YAML).")
        var file: String

        func run() async throws {
            try await reporting {
                for entry in try PolicyCheatsheet.read(file).entries { print("\(entry.name) \(entry.kind)") }
            }
        }
    }
}
