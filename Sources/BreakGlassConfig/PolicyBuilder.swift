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

/// Turns a YAML node tree into a `Policy`, reporting every problem to its reader. The sections are
/// read in extensions: `PolicyBuilder+Gateway`, `+Pathways` (groups too) and `+Probes` (alerts too).
struct PolicyBuilder {
    var reader: PolicyReader
    let baseDirectory: String

    static let topKeys = ["gateway", "groups", "pathways", "probes", "alerts"]

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

    // MARK: values shared by the sections

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
