import ArgumentParser

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Prints a message for people on stderr and exits with a status.
struct CLIFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 1

    var description: String { message }
}

enum Console {
    static func error(_ text: String) {
        FileHandleWriter.standardError.write("breakglass: " + text + "\n")
    }
}

/// Unbuffered writes to a file descriptor.
struct FileHandleWriter {
    let fd: Int32
    static let standardError = FileHandleWriter(fd: 2)
    static let standardOutput = FileHandleWriter(fd: 1)

    func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let count = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress, $0.count) }
            if count <= 0 { return }
            bytes = bytes.dropFirst(count)
        }
    }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning a `CLIFailure` into a message on stderr and its exit status.
    func reporting(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as CLIFailure {
            Console.error(failure.message)
            throw ExitCode(failure.exitCode)
        }
    }
}

/// The C library's write(2), named apart from `FileHandleWriter.write`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, buffer, count)
}
