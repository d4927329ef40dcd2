import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A key file that is missing, unsafe or malformed.
public struct KeyFileError: Error, Sendable, CustomStringConvertible {
    /// The key file's path.
    public var path: String
    /// What is wrong with it, completing a sentence that starts with the path.
    public var problem: String

    /// An error for the key file at `path` with `problem`.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// The path followed by the problem.
    public var description: String { "\(path) \(problem)" }
}

/// Reading and writing private key files with safe permissions.
public enum KeyFile {
    /// Largest key file read.
    static let maximumSize = 64 * 1024

    /// Reads a private key file after checking, on the opened file itself, that it is a regular file
    /// owned by this process's user or root, and that only its owner can read or write it.
    public static func readPrivate(path: String) throws(KeyFileError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KeyFileError(path: path, problem: "cannot be read: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw KeyFileError(path: path, problem: "cannot be examined: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError(path: path, problem: "is not a regular file") }
        guard info.st_uid == geteuid() || info.st_uid == 0 else {
            let owner = userName(info.st_uid).map { "\($0) (uid \(info.st_uid))" } ?? "uid \(info.st_uid)"
            let hint = userName(info.st_uid).map { "; run this as \($0) (sudo -u \($0) ...)" } ?? ""
            throw KeyFileError(path: path, problem: "is owned by \(owner): a private key must belong to this user or root\(hint)")
        }
        guard (info.st_mode & 0o077) == 0 else {
            throw KeyFileError(
                path: path,
                problem:
                    "has mode \(String(info.st_mode & 0o777, radix: 8)): a private key must not be readable or writable by group or others (chmod 600)"
            )
        }
        guard info.st_size <= maximumSize else { throw KeyFileError(path: path, problem: "is larger than \(maximumSize) bytes") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes[filled...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw KeyFileError(path: path, problem: "cannot be read: \(String(cString: strerror(errno)))") }
            filled += count
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw KeyFileError(path: path, problem: "is not text")
        }
        return text
    }

    /// Writes a new private file with mode 0600; refuses to overwrite an existing file unless `replace`.
    public static func writePrivate(_ contents: String, to path: String, replace: Bool = false) throws(KeyFileError) {
        guard replace else { return try writeNew(contents, to: path) }
        // Replace through a new file and a rename, so the old key stays whole until the new one is on disk.
        let temporary = path + ".new-\(getpid())"
        unlink(temporary)
        try writeNew(contents, to: temporary)
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw KeyFileError(path: path, problem: "cannot be replaced: \(String(cString: strerror(errno)))")
        }
    }

    private static func writeNew(_ contents: String, to path: String) throws(KeyFileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? "already exists (refusing to overwrite a key)" : String(cString: strerror(errno))
            throw KeyFileError(path: path, problem: reason)
        }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0 else {
            throw KeyFileError(path: path, problem: "cannot be made private: \(String(cString: strerror(errno)))")
        }
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if result < 0 {
                if errno == EINTR { continue }
                throw KeyFileError(path: path, problem: "cannot be written: \(String(cString: strerror(errno)))")
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            throw KeyFileError(path: path, problem: "cannot be flushed to disk: \(String(cString: strerror(errno)))")
        }
    }

    /// The name of the user `uid`, from the user database; nil when it has none.
    private static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }
}
