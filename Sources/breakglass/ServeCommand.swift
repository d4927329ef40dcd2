import ArgumentParser
import BreakGlassConfig
import BreakGlassGateway
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway with a policy file. SIGHUP reloads the policy; SIGTERM/SIGINT stop gracefully.",
        discussion:
            "An invalid policy at start refuses to start and lists every error; an invalid policy on reload is refused and the last good one stays in force."
    )

    @Option(name: .long, help: "The policy file (YAML).")
    var config: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Event loop threads (default: one per core).")
    var threads: Int?

    func run() async throws {
        try await reporting {
            let level = logLevel
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "breakglass")
            if let threads, !(1...256).contains(threads) {
                throw CLIFailure(message: "--threads must be between 1 and 256")
            }
            let group: MultiThreadedEventLoopGroup = threads.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) } ?? .singleton
            let gateway: GatewayService
            do {
                gateway = try await GatewayService(policyPath: config, group: group, logger: logger)
            } catch {
                throw CLIFailure(message: "refusing to start: \(error)")
            }
            let services = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: gateway.services,
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            do {
                try await services.run()
            } catch {
                throw CLIFailure(message: "the gateway stopped: \(error)")
            }
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
