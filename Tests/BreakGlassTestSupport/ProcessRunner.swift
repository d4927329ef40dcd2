import Foundation

/// Runs a program to completion with optional standard input and collects its output.
public enum ProcessRunner {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `executable` with `arguments`; a program still running after `timeout` is killed.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        stdin: String? = nil,
        environment: [String: String]? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe()
        let errors = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = input
        let exited = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in
            exited.continuation.yield()
            exited.continuation.finish()
        }
        try process.run()
        // Pipes are drained on their own threads: a blocking read on the cooperative pool would starve
        // every other task in the test process (including the gateway that the program may be talking to).
        async let outputData = readAll(output.fileHandleForReading)
        async let errorData = readAll(errors.fileHandleForReading)
        // The throwing write: a program that exits before reading its input makes the write fail
        // with EPIPE, which the non-throwing `write(_:)` turns into a crash of the whole test process.
        if let stdin { try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        let timer = Task {
            try await Task.sleep(for: timeout)
            // SIGKILL: a test process that hosts a gateway ignores SIGTERM (ServiceLifecycle traps it),
            // and children inherit ignored signals.
            kill(process.processIdentifier, SIGKILL)
        }
        for await _ in exited.stream {}
        timer.cancel()
        let stdout = await outputData
        let stderr = await errorData
        // The read ends are closed here: left to Foundation they stayed open, and a whole test run
        // piled up more than a thousand descriptors. Past about 1,360 of them, Foundation's
        // `Process.run` (its scan of /proc/self/fd copies 256 bytes per entry) can read past a
        // mapped page and crash the test process.
        try? output.fileHandleForReading.close()
        try? errors.fileHandleForReading.close()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self)
        )
    }

    static func readAll(_ handle: FileHandle) async -> Data {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: readToEnd(handle))
            }
        }
    }

    /// Reads `handle` to its end with read(2), again when a signal interrupts it: Foundation's
    /// `readDataToEndOfFile` and `availableData` crash the test process on `EINTR`.
    public static func readToEnd(_ handle: FileHandle) -> Data {
        var data = Data()
        while true {
            let chunk = readSome(handle)
            if chunk.isEmpty { return data }
            data.append(chunk)
        }
    }

    /// What one read(2) of `handle` returns (it waits for some); empty at the end or on an error.
    public static func readSome(_ handle: FileHandle) -> Data {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count > 0 { return Data(chunk[0..<count]) }
            if count < 0, errno == EINTR { continue }
            return Data()
        }
    }

    /// Where a program is on PATH, or nil.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The built `breakglass` executable, next to the test bundle.
    public static func breakglassExecutable() throws -> String {
        let me = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var folder = (me as NSString).deletingLastPathComponent
        for _ in 0..<4 {
            let candidate = folder + "/breakglass"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            folder = (folder as NSString).deletingLastPathComponent
        }
        throw TestSupportError("the breakglass executable was not found beside \(me); run swift build first")
    }
}

/// A failure in test setup, with a message for people.
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
