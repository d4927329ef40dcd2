import ArgumentParser
import BreakGlassClient
import BreakGlassGateway
import BreakGlassHealth
import Foundation

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Run one self-test round now on the running gateway and report each pathway's steps.",
        discussion: """
            Asks the gateway on this machine (through its admin socket) to probe every pathway end to end at
            once: a real PAM login as the probe identity, TLS to its own listener, the probe's request or
            tunnel, release, and the round's audit records proven in a fresh checkpoint.
            Exit status: 0 every pathway and check passed, 1 something failed, 2 the round could not run.
            """
    )

    @OptionGroup var admin: AdminSocketOptions

    @Option(name: .long, help: "Report only this pathway.")
    var pathway: String?

    @Flag(name: .long, help: "Print the round as JSON.")
    var json = false

    struct Answer: Decodable {
        var round: ProbeRoundReport
        var health: HealthMonitor.Report
    }

    func run() async throws {
        try await reporting {
            let client: AdminClient
            do {
                client = try admin.client()
            } catch let failure as CLIFailure {
                throw CLIFailure(message: failure.message, exitCode: 2)
            }
            let data: Data
            do throws(ClientError) {
                data = try await client.selftest(pathway: pathway)
            } catch {
                throw CLIFailure(message: "the self-test could not run: \(error.message)", exitCode: 2)
            }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            guard let answer = try? decoder.decode(Answer.self, from: data) else {
                throw CLIFailure(message: "the gateway's self-test answer could not be read", exitCode: 2)
            }
            if let pathway, answer.round.pathways.isEmpty {
                throw CLIFailure(message: "pathway \(pathway) was not probed (unknown, or probe: false)", exitCode: 2)
            }
            if answer.round.pathways.isEmpty {
                throw CLIFailure(
                    message: "nothing was probed: the policy has no probes section, or every pathway has probe: false", exitCode: 2)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: (try? encoder.encode(answer.round)) ?? Data("{}".utf8), as: UTF8.self))
            } else {
                print(HealthTable.round(answer.round), terminator: "")
            }
            if !answer.round.passed { throw ExitCode(1) }
        }
    }
}
