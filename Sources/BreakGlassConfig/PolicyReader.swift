import BreakGlassCore
import Yams

/// Reads typed values out of a YAML node tree and collects every problem with its place.
struct PolicyReader {
    let file: String
    private(set) var issues: [PolicyIssue] = []

    init(file: String) {
        self.file = file
    }

    mutating func report(_ node: Node?, _ path: String, _ message: String) {
        let mark = node?.mark
        issues.append(
            PolicyIssue(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, keyPath: path, message: message)
        )
    }

    mutating func report(mark: Mark?, _ path: String, _ message: String) {
        issues.append(
            PolicyIssue(file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, keyPath: path, message: message)
        )
    }

    /// The entries of a mapping by key; unknown keys (not in `allowed`) are reported. nil when not a mapping.
    mutating func mapping(_ node: Node, _ path: String, allowed: [String]?) -> MappingView? {
        guard case .mapping(let mapping) = node else {
            report(node, path, "must be a mapping (key: value lines), found \(Self.describe(node))")
            return nil
        }
        var entries: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                report(keyNode, path, "keys must be plain text")
                continue
            }
            let key = scalar.string
            if let allowed, !allowed.contains(key) {
                let suggestion =
                    allowed.min(by: { Self.distance($0, key) < Self.distance($1, key) })
                    .flatMap { Self.distance($0, key) <= 2 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
                report(keyNode, Self.join(path, key), "unknown key\(suggestion); allowed here: \(allowed.joined(separator: ", "))")
                continue
            }
            entries.append((key, keyNode, value))
        }
        return MappingView(node: node, path: path, entries: entries)
    }

    mutating func string(_ node: Node, _ path: String) -> String? {
        guard case .scalar(let scalar) = node, !Self.isNull(scalar) else {
            report(node, path, "must be text, found \(Self.describe(node))")
            return nil
        }
        return scalar.string
    }

    mutating func nonEmptyString(_ node: Node, _ path: String) -> String? {
        guard let text = string(node, path) else { return nil }
        guard !text.isEmpty else {
            report(node, path, "must not be empty")
            return nil
        }
        return text
    }

    mutating func duration(_ node: Node, _ path: String) -> Duration? {
        guard let text = string(node, path) else { return nil }
        guard let value = Duration(policyText: text) else {
            report(node, path, "\"\(text)\" is not a duration (write e.g. 30s, 15m, 1h, 1h30m)")
            return nil
        }
        return value
    }

    mutating func integer(_ node: Node, _ path: String, in range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let scalar) = node, let value = Int(scalar.string) else {
            report(node, path, "must be a whole number, found \(Self.describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(node, path, "\(value) is out of range \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return value
    }

    mutating func boolean(_ node: Node, _ path: String) -> Bool? {
        guard case .scalar(let scalar) = node, scalar.style == .plain, ["true", "false"].contains(scalar.string) else {
            report(node, path, "must be true or false, found \(Self.describe(node))")
            return nil
        }
        return scalar.string == "true"
    }

    mutating func stringList(_ node: Node, _ path: String) -> [(String, Node)]? {
        guard case .sequence(let sequence) = node else {
            report(node, path, "must be a list, found \(Self.describe(node))")
            return nil
        }
        var values: [(String, Node)] = []
        for (index, item) in sequence.enumerated() {
            if let text = string(item, "\(path)[\(index)]") { values.append((text, item)) }
        }
        return values
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): isNull(scalar) ? "nothing" : "\"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias (aliases are not supported)"
        }
    }

    /// Edit distance, for "did you mean" hints on short keys.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// The checked entries of one YAML mapping.
struct MappingView {
    let node: Node
    let path: String
    let entries: [(key: String, keyNode: Node, value: Node)]

    subscript(key: String) -> Node? {
        entries.first(where: { $0.key == key })?.value
    }

    func path(_ key: String) -> String { PolicyReader.join(path, key) }

    /// The value under `key`, reporting it as missing when absent.
    func required(_ key: String, _ reader: inout PolicyReader) -> Node? {
        if let value = self[key] { return value }
        reader.report(node, path(key), "is required")
        return nil
    }
}
