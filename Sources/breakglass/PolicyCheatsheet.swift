import Foundation
import Yams

/// The on-call cheat sheet of a policy: for each pathway, the commands to get in, use it and get out.
struct PolicyCheatsheet {
    struct Entry {
        var name: String
        var kind: String
        var ticketPattern: String?
        var maxDuration: String?
    }

    var listen: String
    var entries: [Entry]

    init(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let root = try Yams.compose(yaml: text), let gateway = root["gateway"], let pathways = root["pathways"]?.mapping else {
            throw CLIFailure(message: "\(path) has no gateway and pathways sections (breakglass policy check \(path) says more)")
        }
        listen = gateway["listen"]?.string ?? "GATEWAY:8443"
        entries = pathways.compactMap { key, value in
            guard let name = key.string else { return nil }
            return Entry(
                name: name, kind: value["kind"]?.string ?? "?", ticketPattern: value["require_ticket"]?.string,
                maxDuration: value["max_duration"]?.string)
        }.sorted { $0.name < $1.name }
    }

    /// Reads the file; any problem becomes a message for people.
    static func read(_ path: String) throws(CLIFailure) -> PolicyCheatsheet {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw CLIFailure(message: "cannot read the policy file \(path): it does not exist or is not readable")
        }
        do {
            return try PolicyCheatsheet(path: path)
        } catch let failure as CLIFailure {
            throw failure
        } catch {
            throw CLIFailure(message: "\(error)")
        }
    }

    func render(gateway: String?) -> String {
        let url = gateway ?? "https://\(listen)"
        var lines = [
            "breakglass on-call cheat sheet (gateway \(url))",
            "",
            "  export BREAKGLASS_GATEWAY=\(url) BREAKGLASS_CA=/path/to/breakglass-ca.pem",
            "  breakglass status                       # my grants and the time left",
            "",
        ]
        for (index, entry) in entries.enumerated() {
            let ticket = entry.ticketPattern.map { _ in " --ticket INC-1234" } ?? ""
            var header = "\(entry.name) (\(entry.kind)"
            if let pattern = entry.ticketPattern { header += ", ticket must match \(pattern)" }
            if let max = entry.maxDuration { header += ", at most \(max)" }
            lines.append(header + ")")
            lines.append("  breakglass login \(entry.name) --reason \"what is broken\"\(ticket)")
            if entry.kind == "tcp" {
                let port = 15432 + index
                lines.append(
                    "  breakglass tunnel \(entry.name) --listen 127.0.0.1:\(port)     # then point the client at 127.0.0.1:\(port)")
                lines.append("  ssh -o ProxyCommand='breakglass connect \(entry.name)' USER@\(entry.name)   # ssh through it")
                lines.append(
                    "  ncat --proxy 127.0.0.1:3128 --proxy-type http \(entry.name) PORT   # with breakglass proxy --listen 127.0.0.1:3128 running"
                )
            } else {
                lines.append(
                    "  curl --cacert \"$BREAKGLASS_CA\" -H \"Authorization: Bearer $(breakglass token \(entry.name))\" \"$BREAKGLASS_GATEWAY/p/\(entry.name)/\""
                )
            }
            lines.append("  breakglass logout \(entry.name)                 # when done: ends the grant and cuts its connections")
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}
