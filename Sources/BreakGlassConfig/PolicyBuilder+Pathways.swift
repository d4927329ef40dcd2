import BreakGlassCore
import Foundation
import Yams

/// The `groups:` and `pathways:` sections.
extension PolicyBuilder {
    static let pathwayKeys = [
        "kind", "upstream", "allow", "default_duration", "max_duration", "require_ticket", "source_cidrs",
        "connect_timeout", "response_timeout", "max_connections", "max_connections_per_session", "upstream_ca", "audit_query", "probe",
    ]
    static let allowKeys = ["users", "groups"]

    mutating func groups(_ node: Node, _ path: String) -> [String: Set<String>] {
        guard let map = reader.mapping(node, path, allowed: nil) else { return [:] }
        var groups: [String: Set<String>] = [:]
        for entry in map.entries {
            let groupPath = map.path(entry.key)
            if let problem = GrantRequest.nameProblem(entry.key, field: "group name", limit: 64) {
                reader.report(entry.keyNode, groupPath, problem.message)
            }
            var members: Set<String> = []
            for (user, userNode) in reader.stringList(entry.value, groupPath) ?? [] {
                if let problem = GrantRequest.nameProblem(user, field: "user name", limit: GrantRequest.Limits.userLength) {
                    reader.report(userNode, groupPath, "\"\(user)\": \(problem.message)")
                }
                members.insert(user)
            }
            groups[entry.key] = members
        }
        return groups
    }

    mutating func pathways(_ node: Node, _ path: String, groups: [String: Set<String>]) -> [String: Pathway] {
        guard let map = reader.mapping(node, path, allowed: nil) else { return [:] }
        if map.entries.isEmpty { reader.report(node, path, "must name at least one pathway") }
        var pathways: [String: Pathway] = [:]
        for entry in map.entries {
            let pathwayPath = map.path(entry.key)
            let nameOK =
                entry.key.utf8.count <= 64 && !entry.key.isEmpty
                && entry.key.unicodeScalars.allSatisfy {
                    $0.isASCII
                        && (CharacterSet.lowercaseLetters.contains($0) || CharacterSet.decimalDigits.contains($0)
                            || "-_.".unicodeScalars.contains($0))
                }
            if !nameOK {
                reader.report(entry.keyNode, pathwayPath, "pathway names use lowercase letters, digits, '-', '_' and '.' (at most 64)")
            }
            if let pathway = self.pathway(entry.key, entry.value, pathwayPath, groups: groups), nameOK {
                pathways[entry.key] = pathway
            }
        }
        return pathways
    }

    mutating func pathway(_ name: String, _ node: Node, _ path: String, groups: [String: Set<String>]) -> Pathway? {
        guard let map = reader.mapping(node, path, allowed: Self.pathwayKeys) else { return nil }
        var kind: Pathway.Kind?
        if let kindNode = map.required("kind", &reader), let text = reader.string(kindNode, map.path("kind")) {
            kind = Pathway.Kind(rawValue: text)
            if kind == nil {
                reader.report(kindNode, map.path("kind"), "\"\(text)\" is not a pathway kind (http or tcp)")
            }
        }
        var upstream: Upstream?
        if let upstreamNode = map.required("upstream", &reader), let text = reader.string(upstreamNode, map.path("upstream")),
            let kind
        {
            upstream = Upstream(text, kind: kind)
            if let parsed = upstream, parsed.scheme == .https, IPAddress(parsed.host) != nil {
                reader.report(
                    upstreamNode, map.path("upstream"),
                    "an https upstream must be named by host name so that its certificate's name can be checked (e.g. https://localhost:\(parsed.port))"
                )
                upstream = nil
            } else if upstream == nil {
                let example = kind == .http ? "http://HOST:PORT or https://HOST:PORT" : "HOST:PORT or tcp://HOST:PORT"
                reader.report(
                    upstreamNode, map.path("upstream"), "\"\(text)\" is not an upstream for a \(kind.rawValue) pathway (\(example))")
            }
        }
        var users: Set<String> = []
        var allowedGroups: Set<String> = []
        var allowValid = false
        if let allowNode = map.required("allow", &reader), let allow = reader.mapping(allowNode, map.path("allow"), allowed: Self.allowKeys)
        {
            allowValid = true
            if let usersNode = allow["users"] {
                for (user, userNode) in reader.stringList(usersNode, allow.path("users")) ?? [] {
                    if let problem = GrantRequest.nameProblem(user, field: "user name", limit: GrantRequest.Limits.userLength) {
                        reader.report(userNode, allow.path("users"), "\"\(user)\": \(problem.message)")
                        allowValid = false
                    }
                    users.insert(user)
                }
            }
            if let groupsNode = allow["groups"] {
                for (group, groupNode) in reader.stringList(groupsNode, allow.path("groups")) ?? [] {
                    if groups[group] == nil {
                        reader.report(groupNode, allow.path("groups"), "group \"\(group)\" is not defined under groups")
                        allowValid = false
                    }
                    allowedGroups.insert(group)
                }
            }
            if users.isEmpty && allowedGroups.isEmpty {
                reader.report(allowNode, map.path("allow"), "must list at least one user or group")
                allowValid = false
            }
        }
        var defaultDuration: Duration? = .seconds(900)
        var maxDuration: Duration? = .seconds(3600)
        var durationsValid = true
        if let node = map["default_duration"] {
            defaultDuration = positiveDuration(node, map.path("default_duration"))
        }
        if let node = map["max_duration"] {
            maxDuration = positiveDuration(node, map.path("max_duration"))
        }
        if let defaultDuration, let maxDuration, defaultDuration > maxDuration {
            reader.report(
                map["default_duration"] ?? node, map.path("default_duration"),
                "\(defaultDuration.policyText) is longer than max_duration \(maxDuration.policyText)")
            durationsValid = false
        }
        var ticket: TicketPattern?
        var ticketValid = true
        if let ticketNode = map["require_ticket"], let pattern = reader.nonEmptyString(ticketNode, map.path("require_ticket")) {
            do {
                ticket = try TicketPattern(pattern)
            } catch {
                reader.report(ticketNode, map.path("require_ticket"), "\"\(pattern)\" is not a valid regular expression")
                ticketValid = false
            }
        } else if map["require_ticket"] != nil {
            ticketValid = false
        }
        var cidrs: [CIDRBlock]?
        var cidrsValid = true
        if let cidrNode = map["source_cidrs"] {
            var blocks: [CIDRBlock] = []
            for (text, itemNode) in reader.stringList(cidrNode, map.path("source_cidrs")) ?? [] {
                if let block = CIDRBlock(text) {
                    blocks.append(block)
                } else {
                    reader.report(
                        itemNode, map.path("source_cidrs"),
                        "\"\(text)\" is not an address block (e.g. 10.0.0.0/8, fd00::/8) or has host bits set")
                    cidrsValid = false
                }
            }
            if blocks.isEmpty && cidrsValid {
                reader.report(cidrNode, map.path("source_cidrs"), "must list at least one block when present")
                cidrsValid = false
            }
            cidrs = blocks
        }
        var proxy = ProxySettings()
        var proxyValid = true
        var perSession: Int?
        if let node = map["connect_timeout"] {
            if let value = positiveDuration(node, map.path("connect_timeout")) { proxy.connectTimeout = value } else { proxyValid = false }
        }
        if let node = map["response_timeout"] {
            if let value = positiveDuration(node, map.path("response_timeout")) {
                proxy.responseTimeout = value
            } else {
                proxyValid = false
            }
        }
        if let node = map["max_connections"] {
            if let value = reader.integer(node, map.path("max_connections"), in: 1...10_000) {
                proxy.maxConnections = value
            } else {
                proxyValid = false
            }
        }
        if let node = map["max_connections_per_session"] {
            if let value = reader.integer(node, map.path("max_connections_per_session"), in: 1...10_000) {
                perSession = value
            } else {
                proxyValid = false
            }
        }
        proxy.maxConnectionsPerSession = perSession ?? ProxySettings.defaultShare(of: proxy.maxConnections)
        if let node = map["upstream_ca"] {
            if upstream?.scheme != .https {
                reader.report(node, map.path("upstream_ca"), "only an https upstream uses a CA")
                proxyValid = false
            } else if let path = file(node, map.path("upstream_ca"), privateKey: false) {
                proxy.upstreamCA = path
            } else {
                proxyValid = false
            }
        }
        if let node = map["audit_query"] {
            if let value = reader.boolean(node, map.path("audit_query")) { proxy.auditQuery = value } else { proxyValid = false }
        }
        var probe: PathwayProbe?
        var probeValid = true
        if let probeNode = map["probe"], let kind {
            probe = pathwayProbe(probeNode, map.path("probe"), kind: kind)
            probeValid = probe != nil
        }
        guard let kind, let upstream, allowValid, let defaultDuration, let maxDuration, durationsValid, ticketValid, cidrsValid,
            proxyValid, probeValid
        else { return nil }
        return Pathway(
            name: name,
            kind: kind,
            upstream: upstream,
            allowUsers: users,
            allowGroups: allowedGroups,
            defaultDuration: defaultDuration,
            maxDuration: maxDuration,
            requireTicket: ticket,
            sourceCIDRs: cidrs,
            proxy: proxy,
            probe: probe
        )
    }
}
