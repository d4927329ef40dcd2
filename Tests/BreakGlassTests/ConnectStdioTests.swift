import BreakGlassTestSupport
import Foundation
import Testing

/// `breakglass connect` whatever its standard input and output are: regular files (which epoll
/// cannot watch), pipes, or a mix (issue 19 item 10).
@Suite struct ConnectStdioTests {
    /// Runs `connect PATHWAY` with standard input and output as given; returns its status and stderr.
    static func connect(
        _ binary: String, pathway: String, input: FileHandle, output: FileHandle, environment: [String: String]
    ) async throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["connect", pathway]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = input
        process.standardOutput = output
        let errors = Pipe()
        process.standardError = errors
        let exited = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in
            exited.continuation.yield()
            exited.continuation.finish()
        }
        try process.run()
        let timer = Task {
            try await Task.sleep(for: .seconds(30))
            kill(process.processIdentifier, SIGKILL)
        }
        for await _ in exited.stream {}
        timer.cancel()
        let stderr = String(decoding: ProcessRunner.readToEnd(errors.fileHandleForReading), as: UTF8.self)
        return (process.terminationStatus, stderr)
    }

    /// Bytes of every value, so that a lost or reordered chunk shows.
    static func payload(_ count: Int) -> Data {
        Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) })
    }

    @Test func regularFilesAndPipesCarryTheWholeEcho() async throws {
        let fixture = try await ProxyTests.fixture()
        defer { Task { await fixture.stop() } }
        let binary = try ProcessRunner.breakglassExecutable()
        let environment = try await ProxyCLITests.cliLogin(fixture, user: "alice", pathway: "echo")
        let folder = fixture.gateway.directory

        // Standard input from a file, standard output to a file (`< in > out`): more than a pipe's
        // buffer, so that the copy must wait for the other side.
        let sent = Self.payload(300_000)
        let inputPath = folder.file("connect-in")
        try sent.write(to: URL(fileURLWithPath: inputPath))
        let outputPath = folder.file("connect-out")
        #expect(FileManager.default.createFile(atPath: outputPath, contents: nil))
        let both = try await Self.connect(
            binary, pathway: "echo", input: try #require(FileHandle(forReadingAtPath: inputPath)),
            output: try #require(FileHandle(forWritingAtPath: outputPath)), environment: environment)
        #expect(both.status == 0, "\(both.stderr)")
        let echoed = try Data(contentsOf: URL(fileURLWithPath: outputPath))
        #expect(echoed.count == sent.count)
        #expect(echoed == sent)

        // A file in, a pipe out.
        let small = Data("file in, pipe out\n".utf8)
        try small.write(to: URL(fileURLWithPath: inputPath))
        let pipe = Pipe()
        // Read on a thread of its own: a blocking read must not hold a thread of the cooperative pool.
        let (read, reading) = AsyncStream.makeStream(of: Data.self)
        Thread.detachNewThread {
            reading.yield(ProcessRunner.readToEnd(pipe.fileHandleForReading))
            reading.finish()
        }
        let fileIn = try await Self.connect(
            binary, pathway: "echo", input: try #require(FileHandle(forReadingAtPath: inputPath)), output: pipe.fileHandleForWriting,
            environment: environment)
        try pipe.fileHandleForWriting.close()
        #expect(fileIn.status == 0, "\(fileIn.stderr)")
        var received: Data?
        for await data in read { received = data }
        #expect(received == small)

        // A pipe in, a file out (`> out`, as when ssh's ProxyCommand output is captured).
        let outputPath2 = folder.file("connect-out-2")
        #expect(FileManager.default.createFile(atPath: outputPath2, contents: nil))
        let input = Pipe()
        try input.fileHandleForWriting.write(contentsOf: Data("pipe in, file out\n".utf8))
        try input.fileHandleForWriting.close()
        let fileOut = try await Self.connect(
            binary, pathway: "echo", input: input.fileHandleForReading,
            output: try #require(FileHandle(forWritingAtPath: outputPath2)), environment: environment)
        #expect(fileOut.status == 0, "\(fileOut.stderr)")
        #expect(try String(contentsOfFile: outputPath2, encoding: .utf8) == "pipe in, file out\n")

        // /dev/null in: nothing sent, nothing back, and the command ends.
        let empty = try await Self.connect(
            binary, pathway: "echo", input: FileHandle.nullDevice,
            output: try #require(FileHandle(forWritingAtPath: outputPath2)), environment: environment)
        #expect(empty.status == 0, "\(empty.stderr)")
    }
}
