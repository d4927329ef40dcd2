import BreakGlassCore
import NIOCore
import NIOHTTP1

/// A complete, bounded API request.
public struct APIRequest: Sendable {
    /// The HTTP method.
    public var method: HTTPMethod
    /// The request target as sent: path and query.
    public var uri: String
    /// The request's header fields.
    public var headers: HTTPHeaders
    /// The whole body, within `HTTPLimits.maximumBodyBytes`.
    public var body: ByteBuffer
    /// The client's address.
    public var source: IPAddress?

    /// The path without the query string.
    public var path: Substring {
        uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    }
}
