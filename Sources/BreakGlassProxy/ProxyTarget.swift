import BreakGlassCore

/// Where a proxied request goes: `/p/PATHWAY/REST?QUERY` → pathway and the upstream path.
package struct ProxyTarget: Equatable, Sendable {
    package var pathway: String
    /// The path after the pathway name (at least "/"), with the query string.
    package var path: String

    package init(pathway: String, path: String) {
        self.pathway = pathway
        self.path = path
    }

    package static func parse(_ uri: String) -> Result<ProxyTarget, BreakGlassError> {
        // Bytes, not characters: the separators are ASCII, and no grapheme needs finding.
        let prefix = "/p/".utf8
        guard uri.utf8.starts(with: prefix) else {
            return .failure(BreakGlassError(.notFound, "name the pathway: /p/PATHWAY/..."))
        }
        let rest = uri.utf8.dropFirst(prefix.count)
        let nameEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        guard nameEnd != rest.startIndex else {
            return .failure(BreakGlassError(.notFound, "name the pathway: /p/PATHWAY/..."))
        }
        // A name is matched as sent: an escaped one would name a pathway the check below never saw.
        guard !rest[..<nameEnd].contains(UInt8(ascii: "%")) else {
            return .failure(BreakGlassError(.invalidRequest, "the pathway name may not be percent-encoded"))
        }
        guard !rest.contains(UInt8(ascii: "#")) else {
            return .failure(BreakGlassError(.invalidRequest, "a request target has no fragment (#)"))
        }
        let name = Substring(rest[..<nameEnd])
        var path = String(Substring(rest[nameEnd...]))
        if path.isEmpty || path.utf8.first == UInt8(ascii: "?") { path = "/" + path }
        // No way out of the upstream's base path, spelled plainly or percent-encoded.
        if let problem = pathProblem(path.utf8.prefix { $0 != UInt8(ascii: "?") }) {
            return .failure(BreakGlassError(.invalidRequest, problem))
        }
        return .success(ProxyTarget(pathway: String(name), path: path))
    }

    /// Why a path (without its query) might lead elsewhere on some upstream than where it seems to,
    /// or nil when it cannot. Refused: `.` and `..` segments, also with `;parameters` or trailing
    /// escaped spaces; empty segments (`//`, `/;x/`) but the last; backslashes; `%u` escapes; and any
    /// escape that decodes, once or twice, to `/`, `\`, `;`, `.`, `%` (a third level), a control
    /// byte, or to bytes that are not UTF-8. One pass, no copies.
    static func pathProblem(_ path: Substring.UTF8View) -> String? {
        // The current segment, up to its first `;`: its dots, trailing escaped spaces, and whether
        // it has anything else; `parameters` once the `;` is seen.
        var dots = 0
        var spaces = 0
        var other = false
        var parameters = false
        // The root before a leading `/` is no segment.
        var atStart = path.first == UInt8(ascii: "/")
        // The bytes once decoded (`once`), and those decoded again (`twice`, fed by `once`).
        var once = UTF8Check()
        var twice = EscapeCheck()
        var index = path.startIndex
        while index != path.endIndex {
            var byte = path[index]
            path.formIndex(after: &index)
            switch byte {
            case UInt8(ascii: "/"):
                if !atStart, !other {
                    if dots == 1 || dots == 2 { return dotSegment }
                    if dots == 0 { return emptySegment }
                }
                atStart = false
                dots = 0
                spaces = 0
                other = false
                parameters = false
            case UInt8(ascii: "\\"):
                return backslash
            case UInt8(ascii: ";"):
                parameters = true
            case UInt8(ascii: "."):
                if !parameters {
                    if spaces > 0 { other = true }
                    dots += 1
                }
            case UInt8(ascii: "%"):
                guard let high = Self.hexValue(path, at: index),
                    let low = Self.hexValue(path, at: path.index(after: index))
                else {
                    // Not an escape: a `%` as it is, as most servers take it (`%u` aside).
                    if index != path.endIndex, path[index] | 0x20 == UInt8(ascii: "u") { return unicodeEscape }
                    if !parameters { other = true }
                    break
                }
                path.formIndex(&index, offsetBy: 2)
                byte = high << 4 | low
                if let problem = Self.escapeProblem(byte) { return problem }
                if !parameters {
                    if byte == UInt8(ascii: " ") {
                        if dots == 0 { other = true }
                        spaces += 1
                    } else {
                        other = true
                    }
                }
            default:
                if byte < 0x21 || byte == 0x7F { return controlByte }
                if !parameters { other = true }
            }
            guard once.take(byte) else { return notUTF8 }
            if let problem = twice.take(byte) { return problem }
        }
        guard once.isComplete else { return notUTF8 }
        if let problem = twice.finish() { return problem }
        if !atStart, !other, dots == 1 || dots == 2 { return dotSegment }
        return nil
    }

    static let dotSegment = "the path may not contain . or .. segments (also with ;parameters, or escaped)"
    static let emptySegment = "the path may not contain empty segments (//)"
    static let backslash = "the path may not contain backslashes"
    static let unicodeEscape = "the path may not contain %u escapes"
    static let controlByte = "the path may not contain control bytes"
    static let notUTF8 = "the path's escapes must decode to UTF-8 (no overlong or partial sequences)"
    static let escapedSeparator =
        "the path may not contain escaped slashes, backslashes, ';', dots or control bytes, once or twice encoded, or a space encoded twice"

    /// Why a byte an escape decodes to is refused: a separator, a dot, a control byte.
    static func escapeProblem(_ byte: UInt8) -> String? {
        switch byte {
        case UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: ";"), UInt8(ascii: "."): escapedSeparator
        case 0..<0x20, 0x7F: escapedSeparator
        default: nil
        }
    }

    static func hexValue(_ path: Substring.UTF8View, at index: Substring.UTF8View.Index) -> UInt8? {
        guard index != path.endIndex else { return nil }
        return hexValue(path[index])
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The path as audited: query values are blanked unless the pathway keeps them.
    package func auditPath(keepingQueryValues: Bool) -> String {
        if path.utf8.count <= 2048, keepingQueryValues || !path.utf8.contains(UInt8(ascii: "?")) { return path }
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !keepingQueryValues else { return BoundedText.cut(path, bytes: 2048) }
        let names = parts[1].split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).first.map { "\($0)=" } ?? "" }
        return BoundedText.cut(parts[0] + "?" + names.joined(separator: "&"), bytes: 2048)
    }

    /// The pathway named by a CONNECT target `PATHWAY:PORT`; nil when the target has no port.
    package static func connectPathway(_ target: String) -> String? {
        // Bytes, as everywhere in the target: a combining mark after `:` would hide it from a Character search.
        let bytes = target.utf8
        // The port is one to five decimal digits: `Int(_:)` alone would also take a sign.
        guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")) else { return nil }
        let digits = bytes[bytes.index(after: colon)...]
        guard (1...5).contains(digits.count), digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let port = Int(Substring(digits)), (1...65535).contains(port)
        else { return nil }
        let name = bytes[..<colon]
        guard !name.isEmpty, name.count <= 64 else { return nil }
        return String(Substring(name))
    }

    /// Checks bytes as UTF-8, one at a time: no overlong forms, surrogates or partial sequences.
    struct UTF8Check {
        /// Continuation bytes still expected, and the range the next one must fall in.
        private var pending = 0
        private var lower: UInt8 = 0x80
        private var upper: UInt8 = 0xBF

        var isComplete: Bool { pending == 0 }

        mutating func take(_ byte: UInt8) -> Bool {
            if pending > 0 {
                guard byte >= lower, byte <= upper else { return false }
                pending -= 1
                lower = 0x80
                upper = 0xBF
                return true
            }
            switch byte {
            case 0..<0x80: return true
            case 0xC2...0xDF: pending = 1
            case 0xE0: (pending, lower) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: pending = 2
            case 0xED: (pending, upper) = (2, 0x9F)
            case 0xF0: (pending, lower) = (3, 0x90)
            case 0xF1...0xF3: pending = 3
            case 0xF4: (pending, upper) = (3, 0x8F)
            default: return false
            }
            return true
        }
    }

    /// The second decoding: takes the bytes of the first one by one, decodes the escapes among
    /// them and checks what they decode to, and that the result is UTF-8.
    struct EscapeCheck {
        private enum State {
            case plain
            case percent
            case percentHex(digit: UInt8, value: UInt8)
        }
        private var state = State.plain
        private var decoded = UTF8Check()

        mutating func take(_ byte: UInt8) -> String? {
            switch state {
            case .plain:
                if byte == UInt8(ascii: "%") {
                    state = .percent
                    return nil
                }
                return decoded.take(byte) ? nil : ProxyTarget.notUTF8
            case .percent:
                if let value = ProxyTarget.hexValue(byte) {
                    state = .percentHex(digit: byte, value: value)
                    return nil
                }
                if byte | 0x20 == UInt8(ascii: "u") { return ProxyTarget.unicodeEscape }
                state = .plain
                return literal(UInt8(ascii: "%")) ?? take(byte)
            case .percentHex(let digit, let high):
                state = .plain
                guard let low = ProxyTarget.hexValue(byte) else {
                    return literal(UInt8(ascii: "%")) ?? literal(digit) ?? take(byte)
                }
                let value = high << 4 | low
                // A `%` or a space encoded twice: the segment count above sees the first decoding only,
                // so `..%2520` would pass as a name while some upstreams read `.. ` and trim it to `..`.
                if value == UInt8(ascii: "%") || value == UInt8(ascii: " ") { return ProxyTarget.escapedSeparator }
                return ProxyTarget.escapeProblem(value) ?? literal(value)
            }
        }

        /// At the end: a `%` or `%X` left over stands for itself.
        mutating func finish() -> String? {
            let left = state
            state = .plain
            switch left {
            case .plain: break
            case .percent: if let problem = literal(UInt8(ascii: "%")) { return problem }
            case .percentHex(let digit, _): if let problem = literal(UInt8(ascii: "%")) ?? literal(digit) { return problem }
            }
            return decoded.isComplete ? nil : ProxyTarget.notUTF8
        }

        private mutating func literal(_ byte: UInt8) -> String? {
            decoded.take(byte) ? nil : ProxyTarget.notUTF8
        }
    }
}
