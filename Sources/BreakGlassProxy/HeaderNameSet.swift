/// A fixed set of header names, matched without regard to ASCII case and without making a
/// lowercase copy of the name looked up: the names are kept lowercase, grouped by length.
///
/// With `prefixes`, a name that starts with one of them is in the set too. With
/// `underscoresAsHyphens`, `_` matches `-` (CGI and WSGI servers map both to the same variable).
struct HeaderNameSet: Sendable {
    private let byLength: [[[UInt8]]]
    private let prefixes: [[UInt8]]
    private let underscoresAsHyphens: Bool

    init(_ names: some Sequence<String>, prefixes: [String] = [], underscoresAsHyphens: Bool = false) {
        self.underscoresAsHyphens = underscoresAsHyphens
        func folded(_ name: String) -> [UInt8] { name.utf8.map { Self.fold($0, underscores: underscoresAsHyphens) } }
        var byLength: [[[UInt8]]] = []
        for name in names {
            let bytes = folded(name)
            while byLength.count <= bytes.count { byLength.append([]) }
            byLength[bytes.count].append(bytes)
        }
        self.byLength = byLength
        self.prefixes = prefixes.map(folded)
    }

    /// `byte` in lowercase, and `_` as `-` when `underscores`.
    @inline(__always)
    static func fold(_ byte: UInt8, underscores: Bool) -> UInt8 {
        if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { return byte | 0x20 }
        if underscores && byte == UInt8(ascii: "_") { return UInt8(ascii: "-") }
        return byte
    }

    func contains(_ name: String) -> Bool {
        let count = name.utf8.count
        if count < byLength.count {
            for candidate in byLength[count] where matches(candidate, name) { return true }
        }
        for prefix in prefixes where prefix.count <= count && matches(prefix, name) { return true }
        return false
    }

    /// Whether `name` starts with `expected` (kept folded).
    private func matches(_ expected: [UInt8], _ name: String) -> Bool {
        for (expected, byte) in zip(expected, name.utf8) where Self.fold(byte, underscores: underscoresAsHyphens) != expected {
            return false
        }
        return true
    }
}
