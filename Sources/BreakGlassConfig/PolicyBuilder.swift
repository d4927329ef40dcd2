import BreakGlassCore
import Foundation
import Yams

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns a YAML node tree into a `Policy`, reporting every problem to its reader.
struct PolicyBuilder {
    var reader: PolicyReader
    let baseDirectory: String

    static let topKeys = ["gateway", "groups", "pathways", "probes", "alerts"]
    static let gatewayKeys = [
        "id", "listen", "tls", "token_key", "pam", "lockout", "limits", "audit", "admin_socket", "admin_group", "status",
    ]
    static let auditKeys = ["directory", "key", "mirrors", "checkpoint_hook", "reserve", "warn_free", "segment_size"]
    static let tlsKeys = ["certificate", "private_key"]
    static let pamKeys = ["service", "confdir", "failure_delay", "threads", "max_pending"]
    static let lockoutKeys = ["failures", "window", "duration", "source_failures", "user_delay_max"]
    static let limitsKeys = [
        "max_connections", "max_connections_per_source", "head_timeout", "body_min_rate", "body_grace", "idle_timeout",
        "tunnel_idle_timeout", "denial_interval",
    ]
    static let pathwayKeys = [
        "kind", "upstream", "allow", "default_duration", "max_duration", "require_ticket", "source_cidrs",
        "connect_timeout", "response_timeout", "max_connections", "max_connections_per_session", "upstream_ca", "audit_query", "probe",
    ]
    static let allowKeys = ["users", "groups"]

    init(reader: PolicyReader, baseDirectory: String) {
        self.reader = reader
        self.baseDirectory = baseDirectory
    }

    mutating func build(_ root: Node) -> Policy? {
        guard let top = reader.mapping(root, "", allowed: Self.topKeys) else { return nil }
        let gateway = top.required("gateway", &reader).flatMap { gatewaySettings($0, top.path("gateway")) }
        var groups: [String: Set<String>] = [:]
        if let node = top["groups"] { groups = self.groups(node, "groups") }
        var pathways: [String: Pathway] = [:]
        if let node = top.required("pathways", &reader) {
            pathways = self.pathways(node, "pathways", groups: groups)
        }
        var probes: ProbeSettings?
        var sectionsValid = true
        if let node = top["probes"] {
            probes = probeSettings(node, top.path("probes"))
            sectionsValid = probes != nil
            if let probes,
                groups.values.contains(where: { $0.contains(probes.user) })
                    || pathways.values.contains(where: { $0.allowUsers.contains(probes.user) })
            {
                reader.report(
                    node, top.path("probes.user"), "\(probes.user) is the probe identity; it must not be allowed on pathways or in groups")
                sectionsValid = false
            }
        }
        var alerts: [AlertSinkSettings] = []
        if let node = top["alerts"] {
            if let sinks = alertSinks(node, top.path("alerts")) { alerts = sinks } else { sectionsValid = false }
        }
        guard let gateway, sectionsValid else { return nil }
        return Policy(gateway: gateway, groups: groups, pathways: pathways, probes: probes, alerts: alerts)
    }

    // MARK: gateway

    mutating func gatewaySettings(_ node: Node, _ path: String) -> GatewaySettings? {
        guard let map = reader.mapping(node, path, allowed: Self.gatewayKeys) else { return nil }
        var id: String?
        if let idNode = map.required("id", &reader), let text = reader.nonEmptyString(idNode, map.path("id")) {
            if text.utf8.count > 128 || text.contains("+")
                || !text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f })
            {
                reader.report(idNode, map.path("id"), "\"\(text)\" must be printable ASCII without spaces or '+', at most 128 bytes")
            } else {
                id = text
            }
        }
        var listen: ListenAddress?
        if let listenNode = map.required("listen", &reader), let text = reader.string(listenNode, map.path("listen")) {
            listen = ListenAddress(text)
            if listen == nil {
                reader.report(listenNode, map.path("listen"), "\"\(text)\" is not HOST:PORT (e.g. 127.0.0.1:8443)")
            }
        }
        var certificate: String?
        var tlsKey: String?
        if let tlsNode = map.required("tls", &reader), let tls = reader.mapping(tlsNode, map.path("tls"), allowed: Self.tlsKeys) {
            if let certNode = tls.required("certificate", &reader) {
                certificate = file(certNode, tls.path("certificate"), privateKey: false)
            }
            if let keyNode = tls.required("private_key", &reader) {
                tlsKey = file(keyNode, tls.path("private_key"), privateKey: true)
            }
        }
        var tokenKey: String?
        if let keyNode = map.required("token_key", &reader) {
            tokenKey = file(keyNode, map.path("token_key"), privateKey: true)
        }
        let pam = map.required("pam", &reader).flatMap { pamSettings($0, map.path("pam")) }
        var lockout: LockoutPolicy? = LockoutPolicy()
        if let lockoutNode = map["lockout"] {
            lockout = lockoutPolicy(lockoutNode, map.path("lockout"))
        }
        var limits: GatewayLimits? = GatewayLimits()
        if let limitsNode = map["limits"] {
            limits = gatewayLimits(limitsNode, map.path("limits"))
        }
        let audit = map.required("audit", &reader).flatMap { auditSettings($0, map.path("audit")) }
        var adminSocket: String?
        var adminValid = true
        if let socketNode = map["admin_socket"], let text = reader.nonEmptyString(socketNode, map.path("admin_socket")) {
            adminSocket = PolicyLoader.absolutePath(text, relativeTo: baseDirectory)
        }
        if let path = adminSocket ?? audit.map({ $0.directory + "/admin.sock" }), path.utf8.count > 107 {
            reader.report(
                map["admin_socket"] ?? node, map.path("admin_socket"),
                "\(path) is longer than a unix socket path may be (107 bytes); set a shorter admin_socket")
            adminValid = false
        }
        var adminGroup: String?
        if let groupNode = map["admin_group"] {
            if let name = reader.nonEmptyString(groupNode, map.path("admin_group")) {
                let isGroupName = name.utf8.allSatisfy { byte in
                    (0x61...0x7A).contains(byte) || (0x41...0x5A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x5F
                        || byte == 0x2D || byte == 0x2E
                }
                if name.utf8.count > 64 || !isGroupName {
                    reader.report(
                        groupNode, map.path("admin_group"), "\"\(name)\" is not a group name (letters, digits, '_', '-', '.'; at most 64)")
                    adminValid = false
                } else {
                    adminGroup = name
                }
            } else {
                adminValid = false
            }
        }
        var status = StatusEndpoint.listener
        if let statusNode = map["status"], let text = reader.string(statusNode, map.path("status")) {
            switch text {
            case "listener": status = .listener
            case "admin": status = .admin
            default:
                if let address = ListenAddress(text), address.port != 0 {
                    status = .address(address)
                } else {
                    reader.report(statusNode, map.path("status"), "\"\(text)\" is not listener, admin or HOST:PORT (e.g. 10.0.0.5:9100)")
                    adminValid = false
                }
            }
        }
        guard let id, let listen, let certificate, let tlsKey, let tokenKey, let pam, let lockout, let limits, let audit, adminValid else {
            return nil
        }
        return GatewaySettings(
            id: id,
            listen: listen,
            tlsCertificate: certificate,
            tlsPrivateKey: tlsKey,
            tokenKey: tokenKey,
            pam: pam,
            lockout: lockout,
            limits: limits,
            audit: audit,
            adminSocket: adminSocket,
            adminGroup: adminGroup,
            status: status
        )
    }

    mutating func auditSettings(_ node: Node, _ path: String) -> AuditSettings? {
        guard let map = reader.mapping(node, path, allowed: Self.auditKeys) else { return nil }
        var valid = true
        var directory: String?
        if let directoryNode = map.required("directory", &reader), let text = reader.nonEmptyString(directoryNode, map.path("directory")) {
            let absolute = PolicyLoader.absolutePath(text, relativeTo: baseDirectory)
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: absolute, isDirectory: &isFolder), !isFolder.boolValue {
                reader.report(directoryNode, map.path("directory"), "\(absolute) exists and is not a folder")
            } else {
                directory = absolute
            }
        }
        let key = map.required("key", &reader).flatMap { file($0, map.path("key"), privateKey: true) }
        var settings = AuditSettings(directory: directory ?? "", key: key ?? "")
        if let mirrorsNode = map["mirrors"] {
            settings.mirrors = (reader.stringList(mirrorsNode, map.path("mirrors")) ?? []).map {
                PolicyLoader.absolutePath($0.0, relativeTo: baseDirectory)
            }
            if let directory, settings.mirrors.contains(directory) {
                reader.report(mirrorsNode, map.path("mirrors"), "a mirror must not be the log folder itself")
                valid = false
            }
        }
        if let hookNode = map["checkpoint_hook"] {
            let command: [String]
            if case .scalar = hookNode {
                command = reader.nonEmptyString(hookNode, map.path("checkpoint_hook")).map { [$0] } ?? []
            } else {
                command = (reader.stringList(hookNode, map.path("checkpoint_hook")) ?? []).map(\.0)
            }
            if let program = command.first {
                let absolute = PolicyLoader.absolutePath(program, relativeTo: baseDirectory)
                if FileManager.default.isExecutableFile(atPath: absolute) {
                    settings.checkpointHook = [absolute] + command.dropFirst()
                } else {
                    reader.report(hookNode, map.path("checkpoint_hook"), "\(absolute) is not an executable program")
                    valid = false
                }
            } else {
                reader.report(hookNode, map.path("checkpoint_hook"), "must name a program")
                valid = false
            }
        }
        for (key, keyPath, range) in [
            ("reserve", \AuditSettings.reserve, (64 << 10)...(1 << 30)),
            ("warn_free", \AuditSettings.warnFree, 0...(1 << 50)),
            ("segment_size", \AuditSettings.segmentSize, (1 << 20)...(4 << 30)),
        ] {
            guard let sizeNode = map[key] else { continue }
            guard let text = reader.string(sizeNode, map.path(key)), let value = ByteSize.parse(text) else {
                reader.report(sizeNode, map.path(key), "is not a size (write e.g. 4MiB, 64MiB, 1GiB)")
                valid = false
                continue
            }
            guard range.contains(value) else {
                reader.report(sizeNode, map.path(key), "must be between \(range.lowerBound) and \(range.upperBound) bytes")
                valid = false
                continue
            }
            settings[keyPath: keyPath] = value
        }
        if settings.reserve * 4 > settings.segmentSize {
            reader.report(node, map.path("reserve"), "must be at most a quarter of segment_size")
            valid = false
        }
        guard valid, directory != nil, key != nil else { return nil }
        return settings
    }

    mutating func pamSettings(_ node: Node, _ path: String) -> PAMSettings? {
        guard let map = reader.mapping(node, path, allowed: Self.pamKeys) else { return nil }
        var settings = PAMSettings(service: "breakglass", confdir: nil)
        var valid = true
        if let serviceNode = map.required("service", &reader), let service = reader.nonEmptyString(serviceNode, map.path("service")) {
            if service.contains("/") || service.hasPrefix(".") || service.utf8.count > 64 {
                reader.report(serviceNode, map.path("service"), "\"\(service)\" must be a plain file name")
                valid = false
            }
            settings.service = service
        } else {
            valid = false
        }
        if let confdirNode = map["confdir"] {
            if let folder = confdir(confdirNode, map.path("confdir"), service: settings.service) {
                settings.confdir = folder
            } else {
                valid = false
            }
        }
        if let delayNode = map["failure_delay"] {
            if let delay = reader.duration(delayNode, map.path("failure_delay")) {
                if delay > .seconds(30) {
                    reader.report(delayNode, map.path("failure_delay"), "must be at most 30s")
                    valid = false
                }
                settings.failureDelay = delay
            } else {
                valid = false
            }
        }
        if let threadsNode = map["threads"] {
            if let threads = reader.integer(threadsNode, map.path("threads"), in: 1...64) {
                settings.threads = threads
            } else {
                valid = false
            }
        }
        if let pendingNode = map["max_pending"] {
            if let pending = reader.integer(pendingNode, map.path("max_pending"), in: 1...10_000) {
                settings.maxPending = pending
            } else {
                valid = false
            }
        }
        return valid ? settings : nil
    }

    mutating func lockoutPolicy(_ node: Node, _ path: String) -> LockoutPolicy? {
        guard let map = reader.mapping(node, path, allowed: Self.lockoutKeys) else { return nil }
        var policy = LockoutPolicy()
        var valid = true
        if let failures = map["failures"] {
            if let value = reader.integer(failures, map.path("failures"), in: 1...1000) { policy.failures = value } else { valid = false }
        }
        if let sourceFailures = map["source_failures"] {
            if let value = reader.integer(sourceFailures, map.path("source_failures"), in: 1...100_000) {
                policy.sourceFailures = value
            } else {
                valid = false
            }
        }
        for (key, keyPath) in [("window", \LockoutPolicy.window), ("duration", \LockoutPolicy.duration)] {
            guard let durationNode = map[key] else { continue }
            guard let value = reader.duration(durationNode, map.path(key)) else {
                valid = false
                continue
            }
            if value <= .zero || value > .seconds(7 * 86_400) {
                reader.report(durationNode, map.path(key), "must be more than 0s and at most 7d")
                valid = false
            }
            policy[keyPath: keyPath] = value
        }
        if let delayNode = map["user_delay_max"] {
            if let value = reader.duration(delayNode, map.path("user_delay_max")) {
                if value >= .zero, value <= .seconds(60) {
                    policy.userDelayMax = value
                } else {
                    reader.report(delayNode, map.path("user_delay_max"), "must be from 0s to 60s")
                    valid = false
                }
            } else {
                valid = false
            }
        }
        return valid ? policy : nil
    }

    mutating func gatewayLimits(_ node: Node, _ path: String) -> GatewayLimits? {
        guard let map = reader.mapping(node, path, allowed: Self.limitsKeys) else { return nil }
        var limits = GatewayLimits()
        var valid = true
        let counts: [(String, WritableKeyPath<GatewayLimits, Int>, ClosedRange<Int>)] = [
            ("max_connections", \.maxConnections, 1...1_000_000),
            ("max_connections_per_source", \.maxConnectionsPerSource, 1...1_000_000),
            ("body_min_rate", \.bodyMinRate, 0...1_000_000_000),
        ]
        for (key, keyPath, range) in counts {
            guard let countNode = map[key] else { continue }
            if let value = reader.integer(countNode, map.path(key), in: range) { limits[keyPath: keyPath] = value } else { valid = false }
        }
        let durations: [(String, WritableKeyPath<GatewayLimits, Duration>)] = [
            ("head_timeout", \.headTimeout), ("body_grace", \.bodyGrace), ("idle_timeout", \.idleTimeout),
            ("tunnel_idle_timeout", \.tunnelIdleTimeout), ("denial_interval", \.denialInterval),
        ]
        for (key, keyPath) in durations {
            guard let durationNode = map[key] else { continue }
            if let value = positiveDuration(durationNode, map.path(key)) { limits[keyPath: keyPath] = value } else { valid = false }
        }
        if limits.maxConnectionsPerSource > limits.maxConnections, let sourceNode = map["max_connections_per_source"] {
            reader.report(sourceNode, map.path("max_connections_per_source"), "must be at most max_connections (\(limits.maxConnections))")
            valid = false
        }
        return valid ? limits : nil
    }

    // MARK: groups and pathways

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

    mutating func positiveDuration(_ node: Node, _ path: String) -> Duration? {
        guard let value = reader.duration(node, path) else { return nil }
        guard value > .zero, value <= .seconds(7 * 86_400) else {
            reader.report(node, path, "must be more than 0s and at most 7d")
            return nil
        }
        return value
    }

    // MARK: files

    /// Resolves and checks a referenced file; private keys must not be readable or writable by group or others.
    mutating func file(_ node: Node, _ path: String, privateKey: Bool) -> String? {
        guard let text = reader.nonEmptyString(node, path) else { return nil }
        let absolute = PolicyLoader.absolutePath(text, relativeTo: baseDirectory)
        var info = stat()
        guard stat(absolute, &info) == 0 else {
            reader.report(node, path, "\(absolute): \(String(cString: strerror(errno)))")
            return nil
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            reader.report(node, path, "\(absolute) is not a regular file")
            return nil
        }
        if privateKey {
            // The same checks the gateway makes when it reads the key (owner, mode, size).
            do throws(KeyFileError) {
                _ = try KeyFile.readPrivate(path: absolute)
            } catch {
                reader.report(node, path, "private key \(error.description)")
                return nil
            }
        }
        guard access(absolute, R_OK) == 0 else {
            reader.report(node, path, "\(absolute) is not readable by this process")
            return nil
        }
        return absolute
    }

    /// Checks a private PAM folder: it must hold the service file and an `other` file, neither writable by others.
    mutating func confdir(_ node: Node, _ path: String, service: String) -> String? {
        guard let text = reader.nonEmptyString(node, path) else { return nil }
        let absolute = PolicyLoader.absolutePath(text, relativeTo: baseDirectory)
        var info = stat()
        guard stat(absolute, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            reader.report(node, path, "\(absolute) is not a folder")
            return nil
        }
        var valid = true
        for name in [service, "other"] {
            let file = (absolute as NSString).appendingPathComponent(name)
            var fileInfo = stat()
            if stat(file, &fileInfo) != 0 || (fileInfo.st_mode & S_IFMT) != S_IFREG {
                let why =
                    name == "other"
                    ? "PAM needs an 'other' file there (put 'auth required pam_deny.so' in it)"
                    : "the PAM service file for \"\(service)\" is missing"
                reader.report(node, path, "\(file) not found: \(why)")
                valid = false
            } else if (fileInfo.st_mode & 0o022) != 0 {
                reader.report(node, path, "\(file) is writable by group or others; PAM stacks must not be (chmod 644)")
                valid = false
            }
        }
        return valid ? absolute : nil
    }
}
