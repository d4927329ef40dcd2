/// A fixed set of header names, matched without regard to ASCII case and without making a
/// lowercase copy of the name looked up: the names are kept lowercase, grouped by length.
struct HeaderNameSet: Sendable {
    private let byLength: [[[UInt8]]]

    init(_ names: some Sequence<String>) {
        var byLength: [[[UInt8]]] = []
        for name in names {
            let bytes = Array(name.lowercased().utf8)
            while byLength.count <= bytes.count { byLength.append([]) }
            byLength[bytes.count].append(bytes)
        }
        self.byLength = byLength
    }

    func contains(_ name: String) -> Bool {
        let count = name.utf8.count
        guard count < byLength.count else { return false }
        for candidate in byLength[count] {
            var same = true
            for (expected, byte) in zip(candidate, name.utf8) {
                let lowered = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                if lowered != expected {
                    same = false
                    break
                }
            }
            if same { return true }
        }
        return false
    }
}
