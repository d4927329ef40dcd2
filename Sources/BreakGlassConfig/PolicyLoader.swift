import BreakGlassCore
import Crypto
import Foundation
import Yams

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Loads and validates a policy file, reporting every problem at once with file:line:column.
public enum PolicyLoader {
    /// Largest policy file accepted.
    public static let maximumFileSize = 4 << 20

    /// Reads, parses and validates the file. Relative paths inside resolve against the file's folder.
    public static func load(path: String, now: Date = Date()) throws(PolicyValidationError) -> LoadedPolicy {
        let absolute = absolutePath(path, relativeTo: FileManager.default.currentDirectoryPath)
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: absolute)
            if let size = attributes[.size] as? Int, size > maximumFileSize {
                throw PolicyValidationError(issues: [
                    PolicyIssue(file: path, line: 0, column: 0, keyPath: "", message: "file is larger than \(maximumFileSize) bytes")
                ])
            }
            data = try Data(contentsOf: URL(fileURLWithPath: absolute))
        } catch let error as PolicyValidationError {
            throw error
        } catch {
            throw PolicyValidationError(issues: [
                PolicyIssue(file: path, line: 0, column: 0, keyPath: "", message: "cannot read: \(Self.reason(error))")
            ])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw PolicyValidationError(issues: [
                PolicyIssue(file: path, line: 0, column: 0, keyPath: "", message: "is not UTF-8 text")
            ])
        }
        let directory = (absolute as NSString).deletingLastPathComponent
        let policy = try parse(text: text, file: path, baseDirectory: directory)
        let digest = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        return LoadedPolicy(policy: policy, file: absolute, sha256: digest, loadedAt: now)
    }

    /// Parses and validates policy text; `file` names it in messages.
    public static func parse(text: String, file: String, baseDirectory: String) throws(PolicyValidationError) -> Policy {
        var reader = PolicyReader(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw PolicyValidationError(issues: [yamlIssue(error, file: file)])
        }
        guard let root else {
            throw PolicyValidationError(issues: [
                PolicyIssue(file: file, line: 0, column: 0, keyPath: "", message: "the file is empty")
            ])
        }
        var builder = PolicyBuilder(reader: reader, baseDirectory: baseDirectory)
        let policy = builder.build(root)
        reader = builder.reader
        guard reader.issues.isEmpty, let policy else {
            throw PolicyValidationError(issues: reader.issues.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
        }
        return policy
    }

    static func absolutePath(_ path: String, relativeTo directory: String) -> String {
        let joined = path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        return (joined as NSString).standardizingPath
    }

    static func reason(_ error: any Error) -> String {
        if let cocoa = error as? CocoaError, let underlying = cocoa.userInfo[NSUnderlyingErrorKey] as? NSError,
            underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if let cocoa = error as? CocoaError, cocoa.code == .fileReadNoSuchFile || cocoa.code == .fileNoSuchFile {
            return "no such file"
        }
        return "\(error.localizedDescription)"
    }

    static func yamlIssue(_ error: any Error, file: String) -> PolicyIssue {
        guard let yaml = error as? YamlError else {
            return PolicyIssue(file: file, line: 0, column: 0, keyPath: "", message: "not valid YAML: \(error)")
        }
        switch yaml {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) (\($0.text))" } ?? problem
            return PolicyIssue(file: file, line: mark.line, column: mark.column, keyPath: "", message: "not valid YAML: \(detail)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PolicyIssue(
                file: file,
                line: context.mark.line,
                column: context.mark.column,
                keyPath: "",
                message: "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) in one mapping"
            )
        case .reader(let problem, _, _, _):
            return PolicyIssue(file: file, line: 0, column: 0, keyPath: "", message: "not valid YAML: \(problem)")
        default:
            return PolicyIssue(file: file, line: 0, column: 0, keyPath: "", message: "not valid YAML: \(yaml)")
        }
    }
}
