import BreakGlassCore

/// Where a proxied request goes: `/p/PATHWAY/REST?QUERY` → pathway and the upstream path.
struct ProxyTarget: Equatable {
    var pathway: String
    /// The path after the pathway name (at least "/"), with the query string.
    var path: String

    static func parse(_ uri: String) -> Result<ProxyTarget, BreakGlassError> {
        let rest = uri.dropFirst("/p/".count)
        let name = rest.prefix { $0 != "/" && $0 != "?" }
        guard !name.isEmpty else {
            return .failure(BreakGlassError(.notFound, "name the pathway: /p/PATHWAY/..."))
        }
        var path = String(rest.dropFirst(name.count))
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        let pathOnly = path.prefix { $0 != "?" }
        // No way out of the upstream's base path, spelled plainly or percent-encoded.
        let segments = pathOnly.split(separator: "/", omittingEmptySubsequences: false).map { $0.lowercased() }
        guard !segments.contains(where: { [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."].contains($0) }),
            !pathOnly.lowercased().contains("%2f"), !pathOnly.contains("\\")
        else {
            return .failure(BreakGlassError(.invalidRequest, "the path may not contain . or .. segments or encoded slashes"))
        }
        return .success(ProxyTarget(pathway: String(name), path: path))
    }

    /// The path as audited: query values are blanked unless the pathway keeps them.
    func auditPath(keepingQueryValues: Bool) -> String {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !keepingQueryValues else { return String(path.prefix(2048)) }
        let names = parts[1].split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).first.map { "\($0)=" } ?? "" }
        return String((parts[0] + "?" + names.joined(separator: "&")).prefix(2048))
    }

    /// The pathway named by a CONNECT target `PATHWAY:PORT`; nil when the target has no port.
    static func connectPathway(_ target: String) -> String? {
        guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        let name = target[..<colon]
        guard !name.isEmpty, name.count <= 64 else { return nil }
        return String(name)
    }
}
