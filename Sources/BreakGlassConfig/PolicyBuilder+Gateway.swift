import BreakGlassCore
import Foundation
import Yams

/// The `gateway:` section: listener, TLS, token key, PAM, lockout, limits, audit log and admin socket.
extension PolicyBuilder {
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
}
