import FuzzSupport

@testable import BreakGlassProxy

/// A request target through the proxy's parser (`/p/PATHWAY/REST?QUERY`) and a CONNECT authority
/// (`PATHWAY:PORT`). An accepted path, decoded once or twice by a simple independent decoder, has no
/// `.` or `..` segment, no backslash and no control byte: it cannot leave the upstream's base path.
@main
enum FuzzProxyTargetMain {
    static func main() {
        runFuzzer { data, size in fuzzProxyTarget(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProxyTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = FuzzInput(data, size).restText
    // NIO's parser delivers no target with a space or a control byte in it.
    let deliverable = !text.utf8.contains { $0 <= 0x20 || $0 == 0x7F }
    for uri in deliverable ? [text, "/p/" + text, "/p/web/" + text] : [] {
        guard case .success(let target) = ProxyTarget.parse(uri) else { continue }
        require(!target.pathway.isEmpty, "an empty pathway name from \(uri)")
        // Bytes, as the upstream sees them (a combining mark after `/` makes another Character).
        require(!target.pathway.utf8.contains(where: { Array("/?%#".utf8).contains($0) }), "pathway \(target.pathway) from \(uri)")
        require(target.path.utf8.first == UInt8(ascii: "/"), "path \(target.path) does not start with /")
        let path = target.path.utf8.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false)[0]
        for decoded in [Array(path), Reference.decode(Array(path)), Reference.decode(Reference.decode(Array(path)))] {
            require(!decoded.contains(UInt8(ascii: "\\")), "a backslash in \(uri)")
            require(!decoded.contains(where: { $0 < 0x20 || $0 == 0x7F }), "a control byte in \(uri)")
            for segment in decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
                // `.` or `..`, before any `;parameters`, and with any trailing spaces (some servers trim
                // them); `...` is an ordinary name (RFC 3986 §3.3).
                var name = segment.prefix { $0 != UInt8(ascii: ";") }
                while name.last == UInt8(ascii: " ") { name = name.dropLast() }
                require(!(1...2).contains(name.count) || name.contains { $0 != UInt8(ascii: ".") }, "a dot segment in \(uri)")
            }
        }
        for keep in [false, true] {
            let audited = target.auditPath(keepingQueryValues: keep)
            require(audited.utf8.count <= 2048, "an audited path of \(audited.utf8.count) bytes")
        }
    }
    if let pathway = ProxyTarget.connectPathway(text) {
        require(!pathway.isEmpty && pathway.utf8.count <= 64, "CONNECT pathway \(pathway) from \(text)")
        let port = text.utf8.dropFirst(pathway.utf8.count)
        // Decimal digits only (`Int(_:)` would also take a sign), from 1 to 65535.
        let digits = port.dropFirst()
        require(
            port.first == UInt8(ascii: ":") && (1...5).contains(digits.count)
                && digits.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
                && Int(String(decoding: digits, as: UTF8.self)).map { (1...65535).contains($0) } == true,
            "CONNECT port \(String(decoding: port, as: UTF8.self))")
    }
    return 0
}

/// Percent-decoding as an upstream might do it: every `%XX` becomes its byte, anything else stays.
enum Reference {
    static func decode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count, let high = hex(bytes[index + 1]), let low = hex(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return out
    }

    static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
