/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as storage formats frame records with.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        let fast = bytes.withContiguousStorageIfAvailable { buffer in update(0xFFFF_FFFF, buffer) }
        return (fast ?? update(0xFFFF_FFFF, Array(bytes))) ^ 0xFFFF_FFFF
    }

    private static func update(_ start: UInt32, _ bytes: some Collection<UInt8>) -> UInt32 {
        table.withUnsafeBufferPointer { table in
            var crc = start
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
            return crc
        }
    }
}
