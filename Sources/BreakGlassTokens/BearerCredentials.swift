/// Reading an `Authorization: Bearer TOKEN` header value.
public enum BearerCredentials {
    /// The token of a `Bearer TOKEN` value (scheme case-insensitive, blanks around the token ignored);
    /// nil for any other scheme or an empty token. It runs on every proxied request, so it reads
    /// bytes and stays clear of Foundation's string bridging.
    public static func token(_ header: String) -> String? {
        let parts = header.utf8.split(separator: UInt8(ascii: " "), maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].count == 6,
            zip(parts[0], "bearer".utf8).allSatisfy({ $0 | 0x20 == $1 })
        else { return nil }
        let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard let first = parts[1].firstIndex(where: { !blank($0) }), let last = parts[1].lastIndex(where: { !blank($0) }) else {
            return nil
        }
        return String(decoding: parts[1][first...last], as: UTF8.self)
    }
}
