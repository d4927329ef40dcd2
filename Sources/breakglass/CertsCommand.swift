import ArgumentParser
import BreakGlassCerts
import BreakGlassCore
import BreakGlassTokens
import CryptoExtras
import Foundation

struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Make certificates.",
        subcommands: [Dev.self]
    )

    struct Dev: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a development CA (kept if present) and a TLS server certificate for the gateway.",
            discussion: "Writes ca.pem, ca-key.pem, server.pem and server-key.pem into --out; keys get mode 0600."
        )

        @Option(name: .long, help: "Folder for the files.")
        var out: String

        @Option(name: .long, help: "DNS names for the server certificate (repeatable).")
        var dns: [String] = ["localhost"]

        @Option(name: .long, help: "IP addresses for the server certificate (repeatable).")
        var ip: [String] = ["127.0.0.1", "::1"]

        @Option(name: .long, help: "Server certificate validity in days.")
        var days: Int = 90

        func run() async throws {
            try await reporting {
                guard (1...825).contains(days) else { throw CLIFailure(message: "--days must be between 1 and 825") }
                do {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                    let caPath = out + "/ca.pem"
                    let caKeyPath = out + "/ca-key.pem"
                    let authority: DevCertificateAuthority
                    if FileManager.default.fileExists(atPath: caPath) && FileManager.default.fileExists(atPath: caKeyPath) {
                        _ = try KeyFile.readPrivate(path: caKeyPath)
                        authority = try DevCertificateAuthority.load(certificatePath: caPath, keyPath: caKeyPath)
                        print("kept CA \(caPath)")
                    } else {
                        authority = try DevCertificateAuthority.generate()
                        try KeyFile.writePrivate(authority.privateKey.pemRepresentation, to: caKeyPath, replace: true)
                        try authority.certificatePEM().write(toFile: caPath, atomically: true, encoding: .utf8)
                        print("wrote CA \(caPath) and its key \(caKeyPath)")
                    }
                    let server = try authority.issueServerCertificate(dnsNames: dns, ipAddresses: ip, validity: .seconds(days * 86_400))
                    try KeyFile.writePrivate(server.privateKeyPEM, to: out + "/server-key.pem", replace: true)
                    try server.certificatePEM().write(toFile: out + "/server.pem", atomically: true, encoding: .utf8)
                    print("wrote server certificate \(out)/server.pem for \((dns + ip).joined(separator: ", ")), valid \(days) days")
                } catch let failure as CLIFailure {
                    throw failure
                } catch {
                    throw CLIFailure(message: "\(error)")
                }
            }
        }
    }
}
