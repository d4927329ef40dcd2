import ArgumentParser
import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassClient
import Foundation

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse emergency access to a pathway: login, request or tunnel, logout, audit trail check, timed.",
        discussion: """
            The session is tagged `drill` in its token, the audit log and alerts. The password and one-time
            code are asked for as in `login` (or read from standard input with --password-stdin).
            Exit status: 0 every step passed, 1 a step failed.
            """
    )

    @OptionGroup var gateway: GatewayOptions

    @Option(name: .long, help: "The pathway to rehearse.")
    var pathway: String

    @Option(name: .long, help: "Why (recorded in the audit log).")
    var reason = "break-glass drill"

    @Option(name: .long, help: "Ticket, when the pathway requires one.")
    var ticket: String?

    @Option(name: .long, help: "User name (default: $USER).")
    var user: String?

    @Option(name: .long, help: "Path requested on an http pathway.")
    var path = "/"

    @Option(name: .long, help: "Bytes a tcp pathway's upstream must send first.")
    var banner: String?

    @Option(name: .long, help: "The auditors' checkpoint key (key string or file) to check the trail against.")
    var auditKey: String?

    @Flag(name: .long, help: "Read the password, then the one-time code, one per line from standard input.")
    var passwordStdin = false

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func run() async throws {
        try await reporting {
            let userName = user ?? ProcessInfo.processInfo.environment["USER"] ?? ""
            guard !userName.isEmpty else { throw CLIFailure(message: "no user: pass --user NAME") }
            let password: String
            let code: String
            if passwordStdin {
                guard let first = readLine(strippingNewline: true), !first.isEmpty, let second = readLine(strippingNewline: true),
                    !second.isEmpty
                else {
                    throw CLIFailure(
                        message: "--password-stdin: standard input must hold the password, then the one-time code, one per line")
                }
                (password, code) = (first, second)
            } else {
                guard let typed = Terminal.readSecret(prompt: "Password for \(userName): "), !typed.isEmpty,
                    let typedCode = Terminal.readSecret(prompt: "One-time code: "), !typedCode.isEmpty
                else { throw CLIFailure(message: "a password and a one-time code are needed") }
                (password, code) = (typed, typedCode.trimmingCharacters(in: .whitespaces))
            }
            var verifier: NoteVerifier?
            if let auditKey {
                let text =
                    FileManager.default.fileExists(atPath: auditKey)
                    ? ((try? String(contentsOfFile: auditKey, encoding: .utf8)) ?? "") : auditKey
                guard let parsed = NoteVerifier(keyString: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw CLIFailure(message: "--audit-key is not a checkpoint key (NAME+HASH+KEY)")
                }
                verifier = parsed
            }
            let drill = Drill(
                gateway: try gateway.resolvedGateway(), caFile: gateway.resolvedCA(),
                login: GrantLogin(
                    user: userName, password: password, oneTimeCode: code, pathway: pathway, reason: reason, ticket: ticket, duration: nil),
                path: path, banner: banner, auditKey: verifier)
            let report = await drill.run()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: (try? encoder.encode(report)) ?? Data("{}".utf8), as: UTF8.self))
            } else {
                print("Drill on pathway \(report.pathway): \(report.passed ? "PASSED" : "FAILED")")
                for step in report.steps {
                    let time = String(format: "%8.1f ms", step.milliseconds)
                    print("  \(HealthTable.pad(step.name, 8)) \(step.passed ? "ok  " : "FAIL") \(time)  \(step.detail)")
                }
                let access = report.timeToAccessMilliseconds.map { String(format: "%.1f ms", $0) } ?? "no access"
                print("  time to access: \(access); total \(String(format: "%.1f ms", report.totalMilliseconds))")
            }
            if !report.passed { throw ExitCode(1) }
        }
    }
}
