import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Small POSIX file helpers that report failures as `AuditLogError`s naming the file.
package enum FileIO {
    static package func failure(_ what: String, _ path: String) -> AuditLogError {
        AuditLogError(.io, "\(what) \(path): \(String(cString: strerror(errno)))")
    }

    /// open(2), named apart from the types' own `open` methods.
    static package func openFile(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        open(path, flags, mode)
    }

    /// close(2).
    static package func closeFile(_ fd: Int32) {
        _ = close(fd)
    }

    /// Appends bytes with one write(2) on a descriptor opened with O_APPEND.
    static package func append(_ fd: Int32, _ bytes: [UInt8], path: String) throws(AuditLogError) {
        let written = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw failure("cannot append to", path) }
    }

    /// Reads a file whole (or its first `upTo` bytes). Bytes in `gap` are not read: the buffer keeps
    /// its size and offsets, but that range holds nothing meaningful (its pages are never touched).
    /// `reusing` is a buffer from an earlier read to read into again (without a gap only; it is
    /// taken): its pages are already mapped, so a large read costs no page faults. With `onRead`
    /// the file is read a piece at a time, and after each piece `onRead` sees the buffer up to where
    /// reading has reached, and the size the buffer will have, so it can work on bytes that are
    /// still in the CPU's cache. The bytes in `gap` are in that view but were never read: callers
    /// must not look at them.
    static package func read(
        _ path: String,
        limit: Int = 1 << 30,
        upTo: Int? = nil,
        gap: Range<Int>? = nil,
        reusing spare: inout [UInt8]?,
        onRead: ((_ bytes: UnsafeRawBufferPointer, _ size: Int) -> Void)? = nil
    ) throws(AuditLogError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open", path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("cannot examine", path) }
        guard Int(info.st_size) <= limit else { throw AuditLogError(.io, "\(path) is larger than \(limit) bytes") }
        let size = min(Int(info.st_size), upTo ?? Int.max)
        var failed = false
        if gap == nil, var bytes = spare.take() {
            if bytes.count > size {
                bytes.removeLast(bytes.count - size)
            } else if bytes.count < size {
                bytes.append(contentsOf: repeatElement(0, count: size - bytes.count))
            }
            let filled = bytes.withUnsafeMutableBytes { buffer in
                fill(fd, buffer.baseAddress, upTo: size, from: 0, failed: &failed, onRead: onRead.map { onRead in { onRead($0, size) } })
            }
            guard !failed else { throw failure("cannot read", path) }
            bytes.removeLast(size - filled)
            return bytes
        }
        // No zero fill: the buffer is read into directly.
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let base = UnsafeMutableRawPointer(buffer.baseAddress)
            let pieces = onRead.map { onRead in { (bytes: UnsafeRawBufferPointer) in onRead(bytes, size) } }
            guard let gap, gap.lowerBound < size else {
                count = fill(fd, base, upTo: size, from: 0, failed: &failed, onRead: pieces)
                return
            }
            count = fill(fd, base, upTo: gap.lowerBound, from: 0, failed: &failed, onRead: pieces)
            // Past the gap (which may reach the end): on to the rest.
            if count == gap.lowerBound, gap.upperBound < size {
                count = fill(fd, base, upTo: size, from: gap.upperBound, failed: &failed, onRead: pieces)
            } else if count == gap.lowerBound {
                count = size
            }
        }
        guard !failed else { throw failure("cannot read", path) }
        return bytes
    }

    /// Reads a file whole (or its first `upTo` bytes) into a new buffer.
    static package func read(
        _ path: String, limit: Int = 1 << 30, upTo: Int? = nil, gap: Range<Int>? = nil
    ) throws(AuditLogError) -> [UInt8] {
        var none: [UInt8]? = nil
        return try read(path, limit: limit, upTo: upTo, gap: gap, reusing: &none)
    }

    /// Reads the file's bytes `from..<end` into the same offsets of `base`; returns where reading
    /// stopped (`end`, or earlier at the end of the file or on an error, which sets `failed`). With
    /// `onRead`, reads `readPiece` bytes at a time and shows it `base..<base + filled` after each.
    private static func fill(
        _ fd: Int32,
        _ base: UnsafeMutableRawPointer?,
        upTo end: Int,
        from start: Int,
        failed: inout Bool,
        onRead: ((UnsafeRawBufferPointer) -> Void)? = nil
    ) -> Int {
        var filled = start
        while filled < end {
            let want = onRead == nil ? end - filled : min(end - filled, readPiece)
            let result = pread(fd, base.map { $0 + filled }, want, off_t(filled))
            if result < 0 && errno == EINTR { continue }
            if result < 0 { failed = true }
            guard result > 0 else { break }
            filled += result
            onRead?(UnsafeRawBufferPointer(start: base, count: filled))
        }
        return filled
    }

    /// Bytes per read when the reader works on them as they arrive: well inside a core's cache.
    static let readPiece = 256 * 1024

    /// Writes all bytes at an offset.
    static package func write(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(AuditLogError) {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset + written)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw failure("cannot write", path) }
            written += count
        }
    }

    static package func syncData(_ fd: Int32, path: String) throws(AuditLogError) {
        guard fdatasync(fd) == 0 else { throw failure("cannot flush (fdatasync)", path) }
    }

    /// fsyncs a folder so that new and renamed entries in it are durable.
    static package func syncDirectory(_ path: String) throws(AuditLogError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open folder", path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot flush folder", path) }
    }

    /// Creates a folder (and parents) with mode 0700 when missing.
    static package func makeDirectory(_ path: String) throws(AuditLogError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw AuditLogError(.io, "cannot create folder \(path): \(error.localizedDescription)")
        }
    }

    /// Replaces a file atomically: temp file, fsync, rename, fsync the folder.
    static package func replaceAtomically(_ path: String, with bytes: [UInt8], mode: mode_t = 0o644) throws(AuditLogError) {
        let folder = (path as NSString).deletingLastPathComponent
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("cannot create", temporary) }
        do throws(AuditLogError) {
            try write(fd, bytes, at: 0, path: temporary)
            guard fsync(fd) == 0 else { throw failure("cannot flush", temporary) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw failure("cannot rename into place", path) }
        try syncDirectory(folder)
    }

    /// Bytes free for this process on the file system holding `path`.
    static package func freeBytes(_ path: String) -> Int? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int(info.f_bavail) * Int(info.f_frsize)
    }
}

/// write(2), named apart from `FileIO.write`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, buffer, count)
}
