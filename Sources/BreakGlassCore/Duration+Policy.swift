/// Durations as policies write them: `90s`, `15m`, `1h`, `1h30m`, `2d`, `500ms`.
extension Duration {
    /// Parses a policy duration; nil when the text is not one (empty, unknown unit, overflow, no unit).
    public init?(policyText text: String) {
        let units: [(suffix: String, milliseconds: Int64)] = [
            ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
        ]
        var rest = Substring(text.trimmingSpaces())
        guard !rest.isEmpty else { return nil }
        var total: Int64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            // "ms" is listed first, so it wins over "m" and "s".
            guard let unit = units.first(where: { rest.hasPrefix($0.suffix) }) else { return nil }
            rest = rest.dropFirst(unit.suffix.count)
            let (product, overflowProduct) = value.multipliedReportingOverflow(by: unit.milliseconds)
            let (sum, overflowSum) = total.addingReportingOverflow(product)
            guard !overflowProduct, !overflowSum else { return nil }
            total = sum
        }
        self = .milliseconds(total)
    }

    /// Whole milliseconds in this duration (truncated).
    public var totalMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole seconds in this duration (truncated).
    public var totalSeconds: Int64 { components.seconds }

    /// Whole nanoseconds (rounded down), as swift-metrics timers take them.
    public var totalNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }

    /// Milliseconds to the microsecond, for reports of step times.
    public var reportMilliseconds: Double { Double(totalMicroseconds) / 1000 }

    /// Whole microseconds (rounded down).
    public var totalMicroseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }

    /// The shortest policy text for this duration, e.g. `1h30m`.
    public var policyText: String {
        var ms = totalMilliseconds
        if ms == 0 { return "0s" }
        var text = ""
        for (suffix, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            if ms >= size {
                text += "\(ms / size)\(suffix)"
                ms %= size
            }
        }
        return text
    }
}

extension String {
    /// The text without leading and trailing spaces and tabs.
    func trimmingSpaces() -> Substring {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return slice
    }
}

/// Byte sizes as policies write them: `4096`, `512KiB`, `64MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
public enum ByteSize {
    /// Parses a size; nil when it is not one or overflows.
    public static func parse(_ text: String) -> Int? {
        let trimmed = String(text.trimmingSpaces())
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("KB", 1000), ("MB", 1_000_000),
            ("GB", 1_000_000_000), ("B", 1),
        ]
        var number = Substring(trimmed)
        var multiplier = 1
        if let unit = units.first(where: { trimmed.hasSuffix($0.0) }) {
            number = number.dropLast(unit.0.count)
            multiplier = unit.1
        }
        guard !number.isEmpty, number.count <= 15, number.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(number) else {
            return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}
