import Foundation

/// A private temporary folder for one test, removed by `remove()`.
public struct TestDirectory: Sendable {
    public let path: String

    public init(_ label: String = "breakglass") throws {
        let base = FileManager.default.temporaryDirectory.path
        let path = "\(base)/\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.path = path
    }

    /// The path of a file inside the folder.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes text to a file inside the folder with the given mode.
    @discardableResult
    public func write(_ name: String, _ text: String, mode: Int = 0o644) throws -> String {
        let target = file(name)
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try text.write(toFile: target, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: target)
        return target
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
