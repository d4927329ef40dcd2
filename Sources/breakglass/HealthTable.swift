import BreakGlassGateway
import BreakGlassHealth
import Foundation

/// Plain-text tables of health reports and probe rounds for people on call.
enum HealthTable {
    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0)
    }

    static func steps(_ steps: [ProbeStep]) -> String {
        steps.map { "\($0.name) \(String(format: "%.1f", $0.milliseconds))" }.joined(separator: ", ")
    }

    static func checks(_ checks: [HealthCheck]) -> String {
        var text = "CHECK        STATE     DETAIL\n"
        for check in checks {
            text += pad(check.name, 13) + pad(check.state.rawValue, 10) + check.detail + "\n"
        }
        return text
    }

    static func health(_ report: HealthMonitor.Report) -> String {
        var text = "Gateway \(report.gateway): \(report.state.rawValue.uppercased())"
        text += report.ready ? " (ready: grants and audit work)" : " (NOT READY: it cannot grant or audit)"
        text += ", \(report.activeSessions) active session(s)\n"
        if let last = report.lastRound {
            let login = report.loginMilliseconds.map { String(format: ", login %.1f ms", $0) } ?? ""
            text += "Last self-test round: \(TimeFormat.local(last))\(login)\n"
        }
        text += "\nPATHWAY              STATE     LAST SUCCESS (local)        STEPS (ms)\n"
        for (name, pathway) in report.pathways.sorted(by: { $0.key < $1.key }) {
            text += pad(name, 21) + pad(pathway.state.rawValue, 10) + pad(pathway.lastSuccess.map(TimeFormat.local) ?? "never", 28)
            text += steps(pathway.steps) + "\n"
            if pathway.state != .healthy, let error = pathway.lastError {
                text += "    last error at \(error.step) [\(error.code)]: \(error.message)\n"
            }
            if pathway.state == .unknown { text += "    \(pathway.probe)\n" }
        }
        text += "\n" + checks(report.checks)
        return text
    }

    static func round(_ round: ProbeRoundReport) -> String {
        var text = "Self-test round at \(TimeFormat.local(round.startedAt)): \(String(format: "%.1f", round.milliseconds)) ms"
        if let login = round.login { text += String(format: ", one PAM login %.1f ms", login.milliseconds) }
        text += "\n\nPATHWAY              RESULT  STEPS (ms)\n"
        for pathway in round.pathways {
            text += pad(pathway.pathway, 21) + pad(pathway.passed ? "pass" : "FAIL", 8) + steps(pathway.steps) + "\n"
            if let failure = pathway.failure { text += "    failed at \(failure.step): \(failure.message)\n" }
        }
        if round.pathways.isEmpty { text += "(no pathway probed: the policy has no probes section, or every pathway has probe: false)\n" }
        text += "\n" + checks(round.checks)
        return text
    }
}
