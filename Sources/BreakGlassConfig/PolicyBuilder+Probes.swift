import BreakGlassCore
import Foundation
import Yams

/// The `probes:` and `alerts:` sections and each pathway's `probe:` key.
extension PolicyBuilder {
    static let probeKeys = [
        "user", "credentials", "ca", "connect", "server_name", "interval", "jitter", "timeout", "parallelism", "grant_duration",
        "fail_after", "recover_after", "certificate_warn", "certificate_fail",
    ]
    static let httpProbeKeys = ["method", "path", "status", "body_contains"]
    static let tcpProbeKeys = ["banner"]
    static let alertKeys = ["exec", "webhook", "ca", "name", "timeout", "attempts", "queue"]

    mutating func probeSettings(_ node: Node, _ path: String) -> ProbeSettings? {
        guard let map = reader.mapping(node, path, allowed: Self.probeKeys) else { return nil }
        var valid = true
        var user: String?
        if let userNode = map.required("user", &reader), let text = reader.nonEmptyString(userNode, map.path("user")) {
            if let problem = GrantRequest.nameProblem(text, field: "user name", limit: GrantRequest.Limits.userLength) {
                reader.report(userNode, map.path("user"), problem.message)
            } else {
                user = text
            }
        }
        var credentials: String?
        if let credentialsNode = map.required("credentials", &reader),
            let file = file(credentialsNode, map.path("credentials"), privateKey: false)
        {
            do throws(ProbeCredentials.Problem) {
                _ = try ProbeCredentials.load(path: file)
                credentials = file
            } catch {
                reader.report(credentialsNode, map.path("credentials"), "probe credentials: \(error.message)")
            }
        }
        let ca = map.required("ca", &reader).flatMap { file($0, map.path("ca"), privateKey: false) }
        var settings = ProbeSettings(user: user ?? "", credentials: credentials ?? "", ca: ca ?? "")
        if let connectNode = map["connect"], let text = reader.string(connectNode, map.path("connect")) {
            if let address = ListenAddress(text) {
                settings.connect = address
            } else {
                reader.report(connectNode, map.path("connect"), "\"\(text)\" is not HOST:PORT")
                valid = false
            }
        }
        if let nameNode = map["server_name"] {
            settings.serverName = reader.nonEmptyString(nameNode, map.path("server_name"))
            valid = valid && settings.serverName != nil
        }
        let durations: [(String, WritableKeyPath<ProbeSettings, Duration>, ClosedRange<Duration>)] = [
            ("interval", \.interval, .seconds(5) ... .seconds(86_400)),
            ("jitter", \.jitter, .zero ... .seconds(3600)),
            ("timeout", \.timeout, .milliseconds(100) ... .seconds(300)),
            ("grant_duration", \.grantDuration, .seconds(10) ... .seconds(900)),
            ("certificate_warn", \.certificateWarn, .zero ... .seconds(365 * 86_400)),
            ("certificate_fail", \.certificateFail, .zero ... .seconds(365 * 86_400)),
        ]
        for (key, keyPath, range) in durations {
            guard let durationNode = map[key] else { continue }
            guard let value = reader.duration(durationNode, map.path(key)) else {
                valid = false
                continue
            }
            guard range.contains(value) else {
                reader.report(
                    durationNode, map.path(key), "must be between \(range.lowerBound.policyText) and \(range.upperBound.policyText)")
                valid = false
                continue
            }
            settings[keyPath: keyPath] = value
        }
        let counts: [(String, WritableKeyPath<ProbeSettings, Int>, ClosedRange<Int>)] = [
            ("parallelism", \.parallelism, 1...64), ("fail_after", \.failAfter, 1...100), ("recover_after", \.recoverAfter, 1...100),
        ]
        for (key, keyPath, range) in counts {
            guard let countNode = map[key] else { continue }
            if let value = reader.integer(countNode, map.path(key), in: range) { settings[keyPath: keyPath] = value } else { valid = false }
        }
        if settings.timeout >= settings.grantDuration {
            reader.report(
                map["timeout"] ?? node, map.path("timeout"), "must be shorter than grant_duration (\(settings.grantDuration.policyText))")
            valid = false
        }
        if settings.certificateFail > settings.certificateWarn {
            reader.report(map["certificate_fail"] ?? node, map.path("certificate_fail"), "must not be longer than certificate_warn")
            valid = false
        }
        guard valid, user != nil, credentials != nil, ca != nil else { return nil }
        return settings
    }

    /// A pathway's `probe:` key: `false`, a mapping for http (method, path, status, body_contains),
    /// or for tcp `connect` / a mapping with `banner`.
    mutating func pathwayProbe(_ node: Node, _ path: String, kind: Pathway.Kind) -> PathwayProbe? {
        if case .scalar(let scalar) = node {
            switch (scalar.string, kind) {
            case ("false", _), ("off", _): return .disabled
            case ("connect", .tcp): return .tcp(banner: nil)
            default:
                let hint = kind == .http ? "{ path: /health, status: 200 }" : "connect or { banner: \"SSH-\" }"
                reader.report(node, path, "must be false or \(hint)")
                return nil
            }
        }
        switch kind {
        case .tcp:
            guard let map = reader.mapping(node, path, allowed: Self.tcpProbeKeys) else { return nil }
            guard let bannerNode = map["banner"] else { return .tcp(banner: nil) }
            guard let banner = reader.nonEmptyString(bannerNode, map.path("banner")) else { return nil }
            guard banner.utf8.count <= 256 else {
                reader.report(bannerNode, map.path("banner"), "must be at most 256 bytes")
                return nil
            }
            return .tcp(banner: banner)
        case .http:
            guard let map = reader.mapping(node, path, allowed: Self.httpProbeKeys) else { return nil }
            var valid = true
            var method = "GET"
            if let methodNode = map["method"], let text = reader.nonEmptyString(methodNode, map.path("method")) {
                if ["GET", "HEAD", "OPTIONS"].contains(text) {
                    method = text
                } else {
                    reader.report(methodNode, map.path("method"), "\"\(text)\" is not a safe method for a probe (GET, HEAD or OPTIONS)")
                    valid = false
                }
            }
            var probePath = "/"
            if let pathNode = map["path"], let text = reader.nonEmptyString(pathNode, map.path("path")) {
                if text.hasPrefix("/"), text.utf8.count <= 1024, !text.contains(".."),
                    text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f && $0 != "#" })
                {
                    probePath = text
                } else {
                    reader.report(pathNode, map.path("path"), "must start with / and be printable ASCII without '..' or '#'")
                    valid = false
                }
            }
            var status = 200...399
            if let statusNode = map["status"] {
                if let code = reader.integer(statusNode, map.path("status"), in: 100...599) { status = code...code } else { valid = false }
            }
            var body: String?
            if let bodyNode = map["body_contains"] {
                body = reader.nonEmptyString(bodyNode, map.path("body_contains"))
                if let text = body, text.utf8.count > 1024 {
                    reader.report(bodyNode, map.path("body_contains"), "must be at most 1024 bytes")
                    valid = false
                }
                valid = valid && body != nil
            }
            return valid ? .http(method: method, path: probePath, status: status, bodyContains: body) : nil
        }
    }

    mutating func alertSinks(_ node: Node, _ path: String) -> [AlertSinkSettings]? {
        guard case .sequence(let items) = node else {
            reader.report(node, path, "must be a list of sinks (- exec: … or - webhook: …)")
            return nil
        }
        var sinks: [AlertSinkSettings] = []
        var valid = true
        for (index, item) in items.enumerated() {
            if let sink = alertSink(item, "\(path)[\(index)]") {
                if sinks.contains(where: { $0.name == sink.name }) {
                    reader.report(item, "\(path)[\(index)].name", "\"\(sink.name)\" names another sink too; give each a name")
                    valid = false
                }
                sinks.append(sink)
            } else {
                valid = false
            }
        }
        return valid ? sinks : nil
    }

    private mutating func alertSink(_ node: Node, _ path: String) -> AlertSinkSettings? {
        guard let map = reader.mapping(node, path, allowed: Self.alertKeys) else { return nil }
        var target: AlertSinkSettings.Target?
        var name: String?
        switch (map["exec"], map["webhook"]) {
        case (.some(let execNode), nil):
            let command: [String]
            if case .scalar = execNode {
                command = reader.nonEmptyString(execNode, map.path("exec")).map { [$0] } ?? []
            } else {
                command = (reader.stringList(execNode, map.path("exec")) ?? []).map(\.0)
            }
            if let program = command.first {
                let absolute = PolicyLoader.absolutePath(program, relativeTo: baseDirectory)
                if FileManager.default.isExecutableFile(atPath: absolute) {
                    target = .exec([absolute] + command.dropFirst())
                    name = "exec:" + (absolute as NSString).lastPathComponent
                } else {
                    reader.report(execNode, map.path("exec"), "\(absolute) is not an executable program")
                }
            } else {
                reader.report(execNode, map.path("exec"), "must name a program")
            }
            if let caNode = map["ca"] { reader.report(caNode, map.path("ca"), "only a webhook uses a CA") }
        case (nil, .some(let urlNode)):
            guard let url = reader.nonEmptyString(urlNode, map.path("webhook")) else { break }
            guard let parsed = URLComponents(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "https" || scheme == "http",
                let host = parsed.host, !host.isEmpty, parsed.user == nil
            else {
                reader.report(urlNode, map.path("webhook"), "\"\(url.prefix(200))\" is not an http(s) URL without credentials")
                break
            }
            var ca: String?
            if let caNode = map["ca"] {
                ca = file(caNode, map.path("ca"), privateKey: false)
                if ca == nil { break }
            }
            target = .webhook(url: url, ca: ca)
            name = "webhook:" + host
        case (.some, .some):
            reader.report(node, path, "a sink has either exec or webhook, not both")
        case (nil, nil):
            reader.report(node, path, "a sink needs exec: PROGRAM or webhook: URL")
        }
        var sink = AlertSinkSettings(name: name ?? "", target: target ?? .exec([]), workingDirectory: baseDirectory)
        var valid = target != nil
        if let nameNode = map["name"] {
            if let text = reader.nonEmptyString(nameNode, map.path("name")), text.utf8.count <= 64 {
                sink.name = text
            } else {
                reader.report(nameNode, map.path("name"), "must be text of at most 64 bytes")
                valid = false
            }
        }
        if let timeoutNode = map["timeout"] {
            if let value = positiveDuration(timeoutNode, map.path("timeout")), value <= .seconds(300) {
                sink.timeout = value
            } else {
                reader.report(timeoutNode, map.path("timeout"), "must be more than 0s and at most 5m")
                valid = false
            }
        }
        if let attemptsNode = map["attempts"] {
            if let value = reader.integer(attemptsNode, map.path("attempts"), in: 1...20) { sink.attempts = value } else { valid = false }
        }
        if let queueNode = map["queue"] {
            if let value = reader.integer(queueNode, map.path("queue"), in: 1...100_000) { sink.queue = value } else { valid = false }
        }
        return valid ? sink : nil
    }
}
