import ArgumentParser
import BreakGlassClient
import BreakGlassGateway
import BreakGlassHealth
import Foundation

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Show a gateway's health: each pathway's state from its self-tests, and the gateway-wide checks.",
        discussion: "Exit status: 0 healthy, 1 degraded, 2 failing, 3 the gateway could not be asked."
    )

    @OptionGroup var gateway: GatewayOptions

    @Flag(name: .long, help: "Print the gateway's JSON as it came.")
    var json = false

    func run() async throws {
        try await reporting {
            let client: GatewayClient
            do {
                client = try gateway.makeClient()
            } catch let failure as CLIFailure {
                throw CLIFailure(message: failure.message, exitCode: 3)
            }
            let outcome = await client.withShutdown { client throws(ClientError) in try await client.health() }
            let answer: (status: Int, body: Data)
            switch outcome {
            case .success(let value): answer = value
            case .failure(let error): throw CLIFailure(message: error.message, exitCode: 3)
            }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            guard let report = try? decoder.decode(HealthMonitor.Report.self, from: answer.body) else {
                throw CLIFailure(message: "the gateway answered \(answer.status) without a health report", exitCode: 3)
            }
            if json {
                print(String(decoding: answer.body, as: UTF8.self))
            } else {
                print(HealthTable.health(report), terminator: "")
            }
            switch report.state {
            case .healthy, .unknown: break
            case .degraded: throw ExitCode(1)
            case .failing: throw ExitCode(2)
            }
        }
    }
}
