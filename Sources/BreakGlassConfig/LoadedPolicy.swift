import BreakGlassCore
import Foundation

/// A policy that passed validation, with where it came from.
public struct LoadedPolicy: Sendable {
    /// The validated policy.
    public var policy: Policy
    /// Absolute path of the policy file.
    public var file: String
    /// Hex SHA-256 of the file's bytes as read.
    public var sha256: String
    /// When the file was read and accepted.
    public var loadedAt: Date

    /// A loaded policy with its source file, the file's hash and when it was loaded.
    public init(policy: Policy, file: String, sha256: String, loadedAt: Date) {
        self.policy = policy
        self.file = file
        self.sha256 = sha256
        self.loadedAt = loadedAt
    }
}
