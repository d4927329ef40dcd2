#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as bytes. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) become IPv4.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// Four bytes for IPv4, sixteen for IPv6.
    public let bytes: [UInt8]

    /// Parses dotted IPv4 or textual IPv6 (no zone, no brackets); nil for anything else.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(bytes: withUnsafeBytes(of: &v4) { Array($0) })
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let raw = withUnsafeBytes(of: &v6) { Array($0) }
        self.init(bytes: raw)
    }

    /// Wraps raw address bytes (4 or 16); nil for any other length.
    public init?(bytes raw: [UInt8]) {
        if raw.count == 4 {
            self.bytes = raw
        } else if raw.count == 16 {
            let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
            self.bytes = raw.prefix(12).elementsEqual(mappedPrefix) ? Array(raw.suffix(4)) : raw
        } else {
            return nil
        }
    }

    /// The key failed logins are counted under: the address for IPv4, its /64 block for IPv6.
    public var lockoutKey: String {
        guard !isIPv4, let block = IPAddress(bytes: Array(bytes.prefix(8)) + Array(repeating: 0, count: 8)) else { return description }
        return "\(block)/64"
    }

    /// True for an IPv4 address.
    public var isIPv4: Bool { bytes.count == 4 }

    /// True for 127.0.0.0/8 and ::1.
    public var isLoopback: Bool {
        isIPv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Dotted decimal for IPv4, the compressed text form (`inet_ntop`) for IPv6.
    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        var storage = in6_addr()
        withUnsafeMutableBytes(of: &storage) { target in
            for (index, byte) in bytes.enumerated() { target[index] = byte }
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        let utf8 = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: utf8, as: UTF8.self)
    }
}
