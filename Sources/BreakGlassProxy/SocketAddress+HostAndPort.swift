import NIOCore

extension SocketAddress {
    /// The address as people write it: `127.0.0.1:8443`, `[::1]:8443`, or a Unix socket's path
    /// (NIO's own description is `[IPv4]127.0.0.1/127.0.0.1:8443`).
    public var hostAndPort: String {
        switch self {
        case .v4:
            return "\(ipAddress ?? "?"):\(port.map(String.init) ?? "?")"
        case .v6:
            return "[\(ipAddress ?? "?")]:\(port.map(String.init) ?? "?")"
        case .unixDomainSocket:
            return pathname ?? "unix socket"
        }
    }
}
