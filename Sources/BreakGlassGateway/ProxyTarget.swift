import BreakGlassCore

/// Where a proxied request goes: `/p/PATHWAY/REST?QUERY` → pathway and the upstream path.
struct ProxyTarget: Equatable {
    var pathway: String
    /// The path after the pathway name (at least "/"), with the query string.
    var path: String

    static func parse(_ uri: String) -> Result<ProxyTarget, BreakGlassError> {
        // Bytes, not characters: the separators are ASCII, and no grapheme needs finding.
        let rest = uri.utf8.dropFirst("/p/".utf8.count)
        let nameEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        guard nameEnd != rest.startIndex else {
            return .failure(BreakGlassError(.notFound, "name the pathway: /p/PATHWAY/..."))
        }
        let name = Substring(rest[..<nameEnd])
        var path = String(Substring(rest[nameEnd...]))
        if path.isEmpty || path.utf8.first == UInt8(ascii: "?") { path = "/" + path }
        // No way out of the upstream's base path, spelled plainly or percent-encoded.
        guard staysInside(path.utf8.prefix { $0 != UInt8(ascii: "?") }) else {
            return .failure(BreakGlassError(.invalidRequest, "the path may not contain . or .. segments or encoded slashes"))
        }
        return .success(ProxyTarget(pathway: String(name), path: path))
    }

    /// Whether a path (without its query) has no `.` or `..` segment, plain or percent-encoded
    /// (`%2e`, any case), no encoded slash (`%2f`) and no backslash. One pass, no copies.
    static func staysInside(_ path: Substring.UTF8View) -> Bool {
        // Per segment: how many dots it has, and whether it has anything else.
        var dots = 0
        var other = false
        var index = path.startIndex
        while index != path.endIndex {
            let byte = path[index]
            path.formIndex(after: &index)
            switch byte {
            case UInt8(ascii: "/"):
                if !other, dots == 1 || dots == 2 { return false }
                dots = 0
                other = false
            case UInt8(ascii: "\\"):
                return false
            case UInt8(ascii: "."):
                dots += 1
            case UInt8(ascii: "%"):
                var lookahead = index
                guard lookahead != path.endIndex, path[lookahead] == UInt8(ascii: "2") else {
                    other = true
                    continue
                }
                path.formIndex(after: &lookahead)
                guard lookahead != path.endIndex else {
                    other = true
                    continue
                }
                switch path[lookahead] | 0x20 {
                case UInt8(ascii: "f"):
                    return false
                case UInt8(ascii: "e"):
                    dots += 1
                    index = path.index(after: lookahead)
                default:
                    other = true
                }
            default:
                other = true
            }
        }
        return other || !(dots == 1 || dots == 2)
    }

    /// The path as audited: query values are blanked unless the pathway keeps them.
    func auditPath(keepingQueryValues: Bool) -> String {
        if path.utf8.count <= 2048, keepingQueryValues || !path.utf8.contains(UInt8(ascii: "?")) { return path }
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
