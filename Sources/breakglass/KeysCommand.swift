import ArgumentParser
import BreakGlassCore
import BreakGlassTokens

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage signing keys.",
        subcommands: [Generate.self]
    )

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new Ed25519 private key (PEM PKCS#8, mode 0600) and print its key id."
        )

        @Option(name: .long, help: "Where to write the key. An existing file is never overwritten unless --force.")
        var out: String

        @Flag(name: .long, help: "Replace an existing file.")
        var force = false

        func run() async throws {
            try await reporting {
                let key = TokenSigningKey.generate()
                do throws(KeyFileError) {
                    try KeyFile.writePrivate(key.pemRepresentation, to: out, replace: force)
                } catch {
                    throw CLIFailure(message: error.description)
                }
                print("wrote \(out) (Ed25519, mode 0600), kid \(key.keyID)")
            }
        }
    }
}
