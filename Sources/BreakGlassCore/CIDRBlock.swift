/// An address block such as `127.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
public struct CIDRBlock: Hashable, Sendable, CustomStringConvertible {
    /// The block's first address (host bits zero).
    public let network: IPAddress
    /// Number of leading bits that make up the network: 0…32 for IPv4, 0…128 for IPv6.
    public let prefixLength: Int

    /// Parses `ADDRESS/PREFIX` or a bare address; nil when either part is invalid or host bits are set.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.bytes.count * 8
        let prefix: Int
        if parts.count == 2 {
            guard parts[1].count <= 3, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(parts[1]),
                value <= maximum
            else { return nil }
            prefix = value
        } else {
            prefix = maximum
        }
        guard Self.masked(address.bytes, prefix) == address.bytes else { return nil }
        self.network = address
        self.prefixLength = prefix
    }

    /// True when the address lies inside this block (an IPv4 address never lies in an IPv6 block).
    public func contains(_ address: IPAddress) -> Bool {
        address.bytes.count == network.bytes.count && Self.masked(address.bytes, prefixLength) == network.bytes
    }

    /// `ADDRESS/PREFIX`.
    public var description: String { "\(network)/\(prefixLength)" }

    private static func masked(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bitsHere = min(max(prefix - index * 8, 0), 8)
            let mask: UInt8 = bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
            return byte & mask
        }
    }
}
