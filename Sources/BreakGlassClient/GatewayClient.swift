import AsyncHTTPClient
import BreakGlassAPI
import BreakGlassCore
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Talks to a breakglass gateway over TLS (1.2 minimum), trusting the given CA or the system roots.
public struct GatewayClient: Sendable {
    /// The gateway's URL, `https://HOST:PORT` without a trailing slash.
    public let baseURL: String
    /// The certificates the gateway's certificate is checked against.
    public let trust: GatewayTrust
    private let client: HTTPClient
    private let timeout: TimeAmount

    /// `gateway` is `https://HOST:PORT`; `caFile` is a PEM bundle to trust instead of the system roots.
    public init(gateway: String, caFile: String?, timeout: Duration = .seconds(30)) throws(ClientError) {
        var base = gateway
        while base.hasSuffix("/") { base.removeLast() }
        guard base.lowercased().hasPrefix("https://"), base.count > "https://".count else {
            throw ClientError(
                code: "invalid_gateway", message: "gateway \"\(gateway)\" must be an https:// URL, e.g. https://127.0.0.1:8443")
        }
        let tls = try Self.tlsConfiguration(caFile: caFile)
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(Int64(timeout.totalSeconds)))
        configuration.redirectConfiguration = .disallow
        // One command, one attempt: a refused connection or an untrusted certificate is said at once,
        // not retried until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        self.baseURL = base
        self.trust = GatewayTrust(caFile: caFile)
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.timeout = .seconds(Int64(timeout.totalSeconds))
    }

    /// TLS 1.2 or later, trusting `caFile` (PEM) or the system roots.
    public static func tlsConfiguration(caFile: String?) throws(ClientError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        guard let caFile else { return tls }
        do {
            let roots = try NIOSSLCertificate.fromPEMFile(caFile)
            guard !roots.isEmpty else { throw ClientError(code: "invalid_ca", message: "\(caFile) holds no certificate") }
            tls.trustRoots = .certificates(roots)
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: "invalid_ca", message: "cannot read CA file \(caFile): \(error)")
        }
        return tls
    }

    /// Closes the connection pool.
    public func shutdown() async {
        try? await client.shutdown()
    }

    /// Runs `body`, then shuts the client down whatever happened.
    public func withShutdown<T: Sendable>(
        _ body: (GatewayClient) async throws(ClientError) -> T
    ) async -> Result<T, ClientError> {
        let result: Result<T, ClientError>
        do {
            result = .success(try await body(self))
        } catch {
            result = .failure(error)
        }
        await shutdown()
        return result
    }

    /// `POST /v1/grants`: logs in and asks for a grant.
    public func requestGrant(_ login: GrantLogin) async throws(ClientError) -> IssuedGrant {
        var body: [String: String] = [
            "user": login.user, "password": login.password, "pathway": login.pathway, "reason": login.reason,
        ]
        body["otp"] = login.oneTimeCode
        body["ticket"] = login.ticket
        body["duration"] = login.duration
        body["tag"] = login.tag
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw ClientError(code: "invalid_request", message: "cannot encode the request: \(error)")
        }
        var request = HTTPClientRequest(url: baseURL + "/v1/grants")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: data))
        let answer: GrantAnswer = try await send(request, expecting: 201)
        guard let token = answer.token else {
            throw ClientError(code: "unexpected_response", message: "the gateway's answer to the login carries no token")
        }
        return IssuedGrant(
            token: token, session: answer.session, pathway: answer.pathway, user: answer.user, reason: answer.reason,
            ticket: answer.ticket, issuedAt: answer.issuedAt, expiresAt: answer.expiresAt, kind: answer.kind)
    }

    /// `GET /v1/grants/current`: what the gateway says about a token.
    public func currentGrant(token: String) async throws(ClientError) -> GrantAnswer {
        var request = HTTPClientRequest(url: baseURL + "/v1/grants/current")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        return try await send(request, expecting: 200)
    }

    /// `GET /v1/health`: the status and the JSON body as they come (503 means failing, with a body).
    public func health() async throws(ClientError) -> (status: Int, body: Data) {
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(HTTPClientRequest(url: baseURL + "/v1/health"), timeout: timeout)
            body = try await response.body.collect(upTo: 4 << 20)
        } catch {
            throw ClientError(code: "unreachable", message: "cannot reach \(baseURL): \(Self.describe(error, trust: trust))")
        }
        return (Int(response.status.code), Data(buffer: body))
    }

    /// `GET /v1/audit/trail`: the session's audit records with inclusion proofs.
    public func auditTrail(token: String) async throws(ClientError) -> AuditTrailAnswer {
        var request = HTTPClientRequest(url: baseURL + "/v1/audit/trail")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        return try await send(request, expecting: 200)
    }

    /// `DELETE /v1/grants/SESSION`: ends the grant early; the gateway cuts its connections.
    public func releaseGrant(session: String, token: String) async throws(ClientError) -> ReleaseAnswer {
        var request = HTTPClientRequest(url: baseURL + "/v1/grants/" + session)
        request.method = .DELETE
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        return try await send(request, expecting: 200)
    }

    private func send<Result: Decodable>(_ request: HTTPClientRequest, expecting status: UInt) async throws(ClientError) -> Result {
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw ClientError(code: "unreachable", message: "cannot reach \(baseURL): \(Self.describe(error, trust: trust))")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard response.status.code == status else {
            if let problem = try? decoder.decode(APIErrorAnswer.self, from: body) {
                throw ClientError(code: problem.error.code, message: problem.error.message, httpStatus: Int(response.status.code))
            }
            throw ClientError(
                code: "unexpected_response", message: "the gateway answered \(response.status)", httpStatus: Int(response.status.code))
        }
        do {
            return try decoder.decode(Result.self, from: body)
        } catch {
            throw ClientError(code: "unexpected_response", message: "the gateway's answer could not be read: \(error)")
        }
    }

    /// What went wrong on the way to the gateway, in words: the system's reason for a failed
    /// connection ("connection refused"); for a certificate that did not verify, the CA it was
    /// checked against (`trust`; nil when unknown) and how to give another. Never the TLS library's
    /// error dump. Every client error message about the way to the gateway is made here.
    static func describe(_ error: any Error, trust: GatewayTrust?) -> String {
        if let words = GatewayTrust.words(for: error, trust: trust) { return words }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first { return describe(first.error, trust: trust) }
            if connection.dnsAError != nil || connection.dnsAAAAError != nil { return "the gateway's name does not resolve" }
        }
        if let client = error as? HTTPClientError {
            if client == .connectTimeout { return "no connection within the timeout" }
            if client == .deadlineExceeded { return "no answer within the timeout" }
            return "\(client)"
        }
        return "\(error)"
    }

}

/// What `login` sends.
public struct GrantLogin: Sendable {
    /// The PAM user.
    public var user: String
    /// The user's password; sent to the gateway only.
    public var password: String
    /// The one-time code, when the PAM stack asks for one.
    public var oneTimeCode: String?
    /// The pathway asked for.
    public var pathway: String
    /// Why emergency access is needed.
    public var reason: String
    /// A ticket reference; required by pathways with `require_ticket`.
    public var ticket: String?
    /// Requested grant length in policy form (e.g. `30m`); nil takes the pathway's default.
    public var duration: String?
    /// `drill` for a rehearsal.
    public var tag: String?

    /// A login with the given fields.
    public init(
        user: String, password: String, oneTimeCode: String?, pathway: String, reason: String, ticket: String?, duration: String?,
        tag: String? = nil
    ) {
        self.tag = tag
        self.user = user
        self.password = password
        self.oneTimeCode = oneTimeCode
        self.pathway = pathway
        self.reason = reason
        self.ticket = ticket
        self.duration = duration
    }
}

/// A grant the gateway issued, as the token store keeps it.
public struct IssuedGrant: Codable, Sendable, Equatable {
    /// The bearer token for the pathway; a secret.
    public var token: String
    /// The session id.
    public var session: String
    /// The pathway granted.
    public var pathway: String
    /// The user the grant was issued to.
    public var user: String
    /// The reason given, as the gateway recorded it.
    public var reason: String?
    /// The ticket given; nil when none.
    public var ticket: String?
    /// When the grant was issued.
    public var issuedAt: Date
    /// When the grant expires.
    public var expiresAt: Date
    /// `http` or `tcp` (gateways before this field: nil).
    public var kind: String?

    /// A grant with the given fields.
    public init(
        token: String, session: String, pathway: String, user: String, reason: String?, ticket: String?, issuedAt: Date,
        expiresAt: Date, kind: String?
    ) {
        self.token = token
        self.session = session
        self.pathway = pathway
        self.user = user
        self.reason = reason
        self.ticket = ticket
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.kind = kind
    }

    enum CodingKeys: String, CodingKey {
        case token, session, pathway, user, reason, ticket, kind
        case issuedAt = "issued_at"
        case expiresAt = "expires_at"
    }
}

/// A client-side failure: an API error code from the gateway, or a local one.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// The gateway's API error code (e.g. `invalid_token`) or a local one (e.g. `token_store`).
    public var code: String
    /// What went wrong, for people.
    public var message: String
    /// The HTTP status of the gateway's answer; nil for local failures.
    public var httpStatus: Int?

    /// An error with `code`, `message` and, when it came from the gateway, its HTTP status.
    public init(code: String, message: String, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
    }

    /// `MESSAGE [CODE]`.
    public var description: String { "\(message) [\(code)]" }
}
