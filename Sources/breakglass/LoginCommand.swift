import ArgumentParser
import BreakGlassClient
import Foundation

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Log in with password and one-time code and get a time-boxed grant for a pathway.",
        discussion: """
            Prompts for the password and the one-time code without echo. With --password-stdin, reads the
            password from the first line of standard input and the code from the second.
            The token is stored (mode 0600) for `breakglass token PATHWAY`.
            """
    )

    @Argument(help: "The pathway (internal service) to open.")
    var pathway: String

    @Option(name: .long, help: "Why emergency access is needed (required, recorded in the audit log).")
    var reason: String

    @Option(name: .long, help: "Incident or change ticket, when the pathway requires one.")
    var ticket: String?

    @Option(name: .long, help: "How long, e.g. 15m or 1h (default: the pathway's default).")
    var duration: String?

    @Option(name: .long, help: "User name (default: $USER).")
    var user: String?

    @Flag(name: .long, help: "Read the password, then the one-time code, one per line from standard input.")
    var passwordStdin = false

    @Flag(name: .long, help: "Do not ask for a one-time code (for PAM stacks without one).")
    var noOTP = false

    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await reporting {
            let userName = user ?? ProcessInfo.processInfo.environment["USER"] ?? ""
            guard !userName.isEmpty else { throw CLIFailure(message: "no user: pass --user NAME") }
            guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw CLIFailure(message: "--reason must say why emergency access is needed")
            }
            let gatewayURL = try gateway.resolvedGateway()
            let client = try gateway.makeClient()
            let password: String
            var code: String?
            if passwordStdin {
                guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                    throw CLIFailure(message: "--password-stdin: the first line of standard input must be the password")
                }
                password = line
                if !noOTP {
                    guard let second = readLine(strippingNewline: true), !second.isEmpty else {
                        throw CLIFailure(
                            message: "--password-stdin: the second line of standard input must be the one-time code (or pass --no-otp)")
                    }
                    code = second
                }
            } else {
                guard let typed = Terminal.readSecret(prompt: "Password for \(userName): "), !typed.isEmpty else {
                    throw CLIFailure(message: "no password given")
                }
                password = typed
                if !noOTP {
                    guard let typedCode = Terminal.readSecret(prompt: "One-time code: "), !typedCode.isEmpty else {
                        throw CLIFailure(message: "no one-time code given")
                    }
                    code = typedCode.trimmingCharacters(in: .whitespaces)
                }
            }
            let login = GrantLogin(
                user: userName,
                password: password,
                oneTimeCode: code,
                pathway: pathway,
                reason: reason,
                ticket: ticket,
                duration: duration
            )
            let grant: IssuedGrant
            let outcome = await client.withShutdown { client throws(ClientError) in try await client.requestGrant(login) }
            switch outcome {
            case .success(let issued):
                grant = issued
            case .failure(let error):
                // Every refusal the gateway answered (4xx: authentication, policy, lockout, an unknown
                // pathway) exits 2; no answer, or the gateway's own failure (5xx), exits 1.
                let refused = error.httpStatus.map { (400..<500).contains($0) } ?? false
                // No answer at all is not a refusal: say so, and what happened.
                guard error.httpStatus != nil || error.code != "unreachable" else {
                    throw CLIFailure(message: "\(error.message) [\(error.code)]", exitCode: 1)
                }
                throw CLIFailure(message: "login refused: \(error.message) [\(error.code)]", exitCode: refused ? 2 : 1)
            }
            do throws(ClientError) {
                try TokenStore().save(StoredGrant(gateway: gatewayURL, grant: grant))
            } catch {
                throw CLIFailure(message: "grant issued but not stored: \(error.message)")
            }
            print("Granted: pathway \(grant.pathway) for \(grant.user), session \(grant.session)")
            print("Expires: \(TimeFormat.local(grant.expiresAt)), in \(TimeFormat.remaining(until: grant.expiresAt))")
            // What to run next depends on the pathway's kind (a gateway from before `kind`: both).
            if grant.kind != "http" {
                print("Tunnel:  breakglass tunnel \(grant.pathway)   (prints the local port to connect to, e.g. for psql)")
                print("Connect: ssh -o ProxyCommand='breakglass connect \(grant.pathway)' HOST")
                print("         or: breakglass proxy   (an HTTP proxy for tools that speak CONNECT, such as ncat)")
            }
            if grant.kind != "tcp" {
                print("Use it:  curl -H \"Authorization: Bearer $(breakglass token \(grant.pathway))\" \(gatewayURL)/p/\(grant.pathway)/")
            }
        }
    }
}

enum TimeFormat {
    static func local(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        formatter.timeZone = .current
        return formatter.string(from: date)
    }

    static func utc(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    static func remaining(until date: Date, now: Date = Date()) -> String {
        let seconds = Int(date.timeIntervalSince(now))
        guard seconds > 0 else { return "expired" }
        let hours = seconds / 3600
        let minutes = (seconds % 3600) / 60
        if hours > 0 { return "\(hours)h\(String(format: "%02d", minutes))m" }
        if minutes > 0 { return "\(minutes)m\(String(format: "%02d", seconds % 60))s" }
        return "\(seconds)s"
    }
}
