import CBreakGlassCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as storage formats frame records with.
/// With the CPU's CRC-32C instruction where it has one (SSE 4.2, AArch64 CRC); otherwise eight
/// bytes at a time from tables (slicing-by-8), then byte by byte.
public enum CRC32C {
    /// Whether this CPU computes CRC-32C itself (checked once).
    public static let usesHardware = breakglass_crc32c_hardware_available() == 1

    /// tables[k][i]: the CRC of byte i followed by k zero bytes.
    private static let tables: [[UInt32]] = {
        var first = [UInt32](repeating: 0, count: 256)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            first[index] = crc
        }
        var tables = [first]
        for k in 1..<8 {
            tables.append(
                (0..<256).map { index in
                    let previous = tables[k - 1][index]
                    return (previous >> 8) ^ first[Int(previous & 0xFF)]
                })
        }
        return tables
    }()

    private static let flat: [UInt32] = tables.flatMap { $0 }

    /// The CRC-32C of a byte collection.
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        let fast = bytes.withContiguousStorageIfAvailable { buffer in update(0xFFFF_FFFF, UnsafeRawBufferPointer(buffer)) }
        return (fast ?? Array(bytes).withUnsafeBytes { update(0xFFFF_FFFF, $0) }) ^ 0xFFFF_FFFF
    }

    /// The CRC-32C of the bytes in a raw buffer.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        update(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
    }

    /// The checksums of three buffers, computed side by side: with the CPU's instruction, three
    /// independent chains run about three times as fast as one after the other.
    public static func checksums(
        _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer
    ) -> (UInt32, UInt32, UInt32) {
        guard usesHardware, let a = first.baseAddress, let b = second.baseAddress, let c = third.baseAddress else {
            return (checksum(first), checksum(second), checksum(third))
        }
        let common = min(first.count, second.count, third.count)
        var crcs: (UInt32, UInt32, UInt32) = (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
        withUnsafeMutableBytes(of: &crcs) { raw in
            if let words = raw.baseAddress?.assumingMemoryBound(to: UInt32.self) {
                breakglass_crc32c_hardware_update3(words, a, b, c, common)
            }
        }
        return (
            update(crcs.0, UnsafeRawBufferPointer(rebasing: first[common...])) ^ 0xFFFF_FFFF,
            update(crcs.1, UnsafeRawBufferPointer(rebasing: second[common...])) ^ 0xFFFF_FFFF,
            update(crcs.2, UnsafeRawBufferPointer(rebasing: third[common...])) ^ 0xFFFF_FFFF
        )
    }

    /// The reference byte-at-a-time computation (for tests).
    public static func checksumBytewise(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = tables[0][Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static func update(_ start: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        if usesHardware {
            guard let base = bytes.baseAddress else { return start }
            return breakglass_crc32c_hardware_update(start, base, bytes.count)
        }
        return updateFromTables(start, bytes)
    }

    /// The table-driven computation (the fallback, and for tests on CPUs with the instruction).
    public static func checksumFromTables(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        updateFromTables(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
    }

    private static func updateFromTables(_ start: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        flat.withUnsafeBufferPointer { t in
            var crc = start
            var index = 0
            let count = bytes.count
            while count - index >= 8 {
                let one = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self)) ^ crc
                let two = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
                crc =
                    t[7 * 256 + Int(one & 0xFF)] ^ t[6 * 256 + Int((one >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((one >> 16) & 0xFF)] ^ t[4 * 256 + Int(one >> 24)]
                    ^ t[3 * 256 + Int(two & 0xFF)] ^ t[2 * 256 + Int((two >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((two >> 16) & 0xFF)] ^ t[Int(two >> 24)]
                index += 8
            }
            while index < count {
                crc = t[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
                index += 1
            }
            return crc
        }
    }
}
