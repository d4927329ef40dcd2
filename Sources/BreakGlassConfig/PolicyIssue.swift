/// One problem found in a policy file, with its place.
public struct PolicyIssue: Sendable, Equatable, CustomStringConvertible {
    /// The policy file's path.
    public var file: String
    /// 1-based line, 0 when the problem has no place in the file.
    public var line: Int
    /// 1-based column, 0 when unknown.
    public var column: Int
    /// The key path, e.g. `pathways.status-api.max_duration` ("" for the whole file).
    public var keyPath: String
    /// What is wrong.
    public var message: String

    /// An issue at `line`:`column` of `file`, under `keyPath`.
    public init(file: String, line: Int, column: Int, keyPath: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    /// `file:line:column: key.path: message`
    public var description: String {
        let place = line > 0 ? "\(file):\(line):\(column)" : file
        return keyPath.isEmpty ? "\(place): \(message)" : "\(place): \(keyPath): \(message)"
    }
}

/// Every problem found in a policy file; the policy was not accepted.
public struct PolicyValidationError: Error, Sendable, CustomStringConvertible {
    /// The problems, in the order found.
    public var issues: [PolicyIssue]

    /// An error listing `issues`.
    public init(issues: [PolicyIssue]) {
        self.issues = issues
    }

    /// A header with the count of errors, then one issue per line.
    public var description: String {
        let count = issues.count == 1 ? "1 error" : "\(issues.count) errors"
        return "policy rejected, \(count):\n" + issues.map { "  \($0)" }.joined(separator: "\n")
    }
}
