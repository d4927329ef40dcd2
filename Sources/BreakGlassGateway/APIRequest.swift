import BreakGlassCore
import NIOCore
import NIOHTTP1

/// A complete, bounded API request.
public struct APIRequest: Sendable {
    public var method: HTTPMethod
    public var uri: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// The client's address.
    public var source: IPAddress?

    /// The path without the query string.
    public var path: Substring {
        uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    }
}
