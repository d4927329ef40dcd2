import Foundation

/// The differential upstream: `Scripts/lib/h11_upstream.py`, an HTTP/1.1 server on Python's h11 (an
/// independent, strict parser) on 127.0.0.1. It records every request it parses, and every protocol
/// error it meets, as one JSON line; each answer is `200` with `{"seen": N}` (and `X-Seen: N`), N being
/// the request's `sequence`.
public final class H11Upstream: Sendable {
    /// One line of the record.
    public struct Record: Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// A whole request, as h11 parsed it.
            case request
            /// A protocol error; h11 closed the connection.
            case error
            /// The peer closed the connection in the middle of a request.
            case incomplete
            /// The connection stayed silent too long.
            case timeout
        }

        public var kind: Kind
        /// The upstream connection, numbered from 1 in accept order.
        public var connection: Int
        /// The request's number, from 1 (requests only).
        public var sequence: Int?
        public var method: String
        public var target: String
        public var version: String
        /// As received, in order, names in their own case.
        public var headers: [(name: String, value: String)]
        public var trailers: [(name: String, value: String)]
        public var body: [UInt8]
        /// Whether the body came chunked.
        public var chunked: Bool
        public var error: String

        /// The values of the header `name` (any case).
        public func values(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        }

        public var description: String {
            switch kind {
            case .request:
                let shownBody = String(decoding: body.prefix(120), as: UTF8.self)
                let shownHeaders = headers.map { "\($0.name): \($0.value)" }.joined(separator: " | ")
                return "#\(sequence ?? 0)@c\(connection) \(method) \(target) HTTP/\(version) [\(shownHeaders)] "
                    + "\(chunked ? "chunked" : "length") body(\(body.count))=\(shownBody.debugDescription)"
            default:
                return "\(kind.rawValue)@c\(connection) \(target.isEmpty ? "" : target + ": ")\(error)"
            }
        }

        init?(line: Substring) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let kind = (object["kind"] as? String).flatMap(Kind.init(rawValue:)),
                let connection = object["conn"] as? Int
            else { return nil }
            func pairs(_ key: String) -> [(name: String, value: String)] {
                ((object[key] as? [[String]]) ?? []).compactMap { $0.count == 2 ? (name: $0[0], value: $0[1]) : nil }
            }
            self.kind = kind
            self.connection = connection
            sequence = object["seq"] as? Int
            method = object["method"] as? String ?? ""
            target = object["target"] as? String ?? ""
            version = object["version"] as? String ?? ""
            headers = pairs("headers")
            trailers = pairs("trailers")
            body = (object["body"] as? String).flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
            chunked = object["chunked"] as? Bool ?? false
            error = object["error"] as? String ?? ""
        }
    }

    public let port: Int
    private let directory: TestDirectory
    private let recordPath: String
    private let input: FileHandle
    private let processIdentifier: Int32
    private let exited: AsyncStream<Void>

    /// Starts the upstream; throws when python3 or h11 is missing (`Scripts/test` installs them).
    public init() async throws {
        guard let python = ProcessRunner.which("python3") else {
            throw TestSupportError("python3 is not installed (Scripts/test installs it)")
        }
        let script = try Self.repositoryFile("Scripts/lib/h11_upstream.py")
        let directory = try TestDirectory("h11-upstream")
        let recordPath = directory.file("records.jsonl")
        let errorPath = try directory.write("stderr.txt", "")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, recordPath]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle(forWritingAtPath: errorPath)
        let exited = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in
            exited.continuation.yield()
            exited.continuation.finish()
        }
        try process.run()
        let firstLine = await Self.firstLine(output.fileHandleForReading)
        guard let port = Int(firstLine) else {
            try? input.fileHandleForWriting.close()
            for await _ in exited.stream {}
            let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            directory.remove()
            throw TestSupportError("the h11 upstream did not start (is h11 installed? Scripts/test installs it): \(errors)")
        }
        self.port = port
        self.directory = directory
        self.recordPath = recordPath
        self.input = input.fileHandleForWriting
        self.processIdentifier = process.processIdentifier
        self.exited = exited.stream
    }

    /// Everything recorded so far, in order.
    public func records() -> [Record] {
        guard let text = try? String(contentsOfFile: recordPath, encoding: .utf8) else { return [] }
        // The last line may be in the middle of being written: only whole lines count.
        return text.split(separator: "\n", omittingEmptySubsequences: true)
            .dropLast(text.hasSuffix("\n") ? 0 : 1)
            .compactMap { Record(line: $0) }
    }

    /// Ends the program (it exits when its standard input closes; after 5 s it is killed) and removes its folder.
    public func stop() async {
        try? input.close()
        let killer = Task { [processIdentifier] in
            try await Task.sleep(for: .seconds(5))
            kill(processIdentifier, SIGKILL)
        }
        for await _ in exited {}
        killer.cancel()
        directory.remove()
    }

    /// The first line the program writes (its port), read off the cooperative pool; empty if it exits first.
    static func firstLine(_ handle: FileHandle) async -> String {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var bytes: [UInt8] = []
                while !bytes.contains(UInt8(ascii: "\n")), bytes.count < 64 {
                    let chunk = ProcessRunner.readSome(handle)
                    if chunk.isEmpty { break }
                    bytes += chunk
                }
                let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first ?? ""
                continuation.resume(returning: line.trimmingCharacters(in: .whitespaces))
            }
        }
    }

    static func repositoryFile(_ path: String) throws -> String {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            folder.deleteLastPathComponent()
        }
        throw TestSupportError("\(path) not found above \(#filePath)")
    }
}
