import BreakGlassAPI
import BreakGlassCore
import Foundation
import NIOCore
import NIOHTTP1

/// A complete API response: status, extra headers and a JSON body.
public struct APIResponse: Sendable {
    /// The HTTP status of the answer.
    public var status: HTTPResponseStatus
    /// Headers besides those every answer gets; `Content-Type` is JSON unless one is given here.
    public var headers: [(String, String)]
    /// The whole body.
    public var body: ByteBuffer

    /// A response with the given status, extra headers and body.
    public init(status: HTTPResponseStatus, headers: [(String, String)] = [], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response from an encodable value (keys sorted, dates in ISO 8601).
    public static func json(_ status: HTTPResponseStatus, _ value: some Encodable, headers: [(String, String)] = []) -> APIResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return APIResponse(status: status, headers: headers, body: ByteBuffer(bytes: data))
    }

    /// The JSON error shape `{"error": {"code": ..., "message": ...}}`.
    public static func error(_ error: BreakGlassError) -> APIResponse {
        var headers: [(String, String)] = []
        if let retry = error.retryAfterSeconds { headers.append(("Retry-After", String(max(1, retry)))) }
        if error.code == .invalidToken { headers.append(("WWW-Authenticate", "Bearer error=\"invalid_token\"")) }
        return .json(
            HTTPResponseStatus(statusCode: error.code.httpStatus),
            APIErrorAnswer(code: error.code.rawValue, message: error.message),
            headers: headers
        )
    }

    /// `method_not_allowed` for `request`, with the `Allow` header naming the method to use.
    package static func methodNotAllowed(_ request: APIRequest, allowed: String) -> APIResponse {
        var response = APIResponse.error(
            BreakGlassError(.methodNotAllowed, "\(request.method) is not allowed on \(request.path); use \(allowed)")
        )
        response.headers.append(("Allow", allowed))
        return response
    }
}
