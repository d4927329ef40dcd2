import BreakGlassAuditFormat
import Foundation

/// Small state files written the way the audit log writes its checkpoint: a temporary file,
/// fsync, rename over the old one, fsync of the folder. A crash leaves the old or the new file.
public enum DurableFile {
    /// Replaces the file at `path` with `bytes` (permissions `mode`) so that a crash leaves the old or the new file.
    public static func replace(_ path: String, with bytes: [UInt8], mode: UInt32 = 0o600) throws(AuditLogError) {
        try FileIO.replaceAtomically(path, with: bytes, mode: mode_t(mode))
    }

    /// The whole file (at most `limit` bytes).
    public static func read(_ path: String, limit: Int = 16 << 20) throws(AuditLogError) -> [UInt8] {
        try FileIO.read(path, limit: limit)
    }
}
