import AsyncHTTPClient
import BreakGlassAPI
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Talks to a gateway's admin socket (a unix socket on the gateway's machine).
public struct AdminClient: Sendable {
    /// Path of the gateway's admin socket.
    public let socketPath: String

    /// A client for the admin socket at `socketPath`.
    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// A live session as the gateway lists it.
    public struct Session: Codable, Sendable, Equatable {
        /// The session id.
        public var session: String
        /// The user the grant was issued to.
        public var user: String
        /// The pathway granted.
        public var pathway: String
        /// When the grant was issued.
        public var issuedAt: Date
        /// When the grant expires.
        public var expiresAt: Date
        /// Client connections the session has open now.
        public var connections: Int

        enum CodingKeys: String, CodingKey {
            case session, user, pathway, connections
            case issuedAt = "issued_at"
            case expiresAt = "expires_at"
        }
    }

    /// What to revoke: one session, all of a user's, or all.
    public enum Target: Sendable {
        case session(String)
        case user(String)
        case all
    }

    struct SessionList: Decodable {
        var sessions: [Session]
    }

    struct Revoked: Decodable {
        var revoked: [Session]
    }

    /// The live sessions, soonest expiry first.
    public func sessions() async throws(ClientError) -> [Session] {
        let list: SessionList = try await send(.GET, "/v1/admin/sessions", body: nil)
        return list.sessions
    }

    /// Revokes sessions at once (their connections are cut); returns those that were live.
    public func revoke(_ target: Target, operator name: String?, reason: String?) async throws(ClientError) -> [Session] {
        var body: [String: Any] = [:]
        switch target {
        case .session(let id): body["session"] = id
        case .user(let user): body["user"] = user
        case .all: body["all"] = true
        }
        body["operator"] = name
        body["reason"] = reason
        let data = (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
        let answer: Revoked = try await send(.POST, "/v1/admin/revoke", body: data)
        return answer.revoked
    }

    /// Runs a self-test round now (or joins the one running); the JSON answer as it comes.
    public func selftest(pathway: String?) async throws(ClientError) -> Data {
        let body = (try? JSONSerialization.data(withJSONObject: pathway.map { ["pathway": $0] } ?? [:])) ?? Data("{}".utf8)
        return try await sendRaw(.POST, "/v1/admin/selftest", body: body, timeout: .seconds(600))
    }

    private func send<Answer: Decodable>(_ method: HTTPMethod, _ path: String, body: Data?) async throws(ClientError) -> Answer {
        let bytes = try await sendRaw(method, path, body: body, timeout: .seconds(10))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Answer.self, from: bytes)
        } catch {
            throw ClientError(code: "unexpected_response", message: "the admin socket's answer could not be read: \(error)")
        }
    }

    private func sendRaw(_ method: HTTPMethod, _ path: String, body: Data?, timeout: TimeAmount) async throws(ClientError) -> Data {
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: path) else {
            throw ClientError(code: "invalid_socket", message: "\(socketPath) cannot be used as a socket path")
        }
        // A missing socket is answered at once (the HTTP client would retry until its timeout).
        var info = stat()
        guard stat(socketPath, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw ClientError(
                code: "unreachable", message: "there is no admin socket at \(socketPath): is the gateway running (and is this its policy)?")
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await client.execute(request, timeout: timeout)
            bytes = try await response.body.collect(upTo: 4 << 20)
        } catch {
            throw ClientError(
                code: "unreachable",
                message: "cannot reach the admin socket \(socketPath): \(error) (is the gateway running, and may you open the socket?)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard response.status == .ok else {
            if let problem = try? decoder.decode(APIErrorAnswer.self, from: bytes) {
                throw ClientError(code: problem.error.code, message: problem.error.message, httpStatus: Int(response.status.code))
            }
            throw ClientError(code: "unexpected_response", message: "the admin socket answered \(response.status)")
        }
        return Data(buffer: bytes)
    }
}
