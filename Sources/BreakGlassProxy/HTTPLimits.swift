/// Bounds on the size of what one HTTP request may send (its deadlines are `GatewayLimits`).
public struct HTTPLimits: Sendable {
    /// Largest header block (names and values) accepted; larger gets 431.
    public var maximumHeaderBytes: Int
    /// Most header fields accepted; more gets 431.
    public var maximumHeaderCount: Int
    /// Largest API request body; larger gets 413.
    public var maximumBodyBytes: Int

    /// Limits with the given values.
    public init(
        maximumHeaderBytes: Int = 16 * 1024,
        maximumHeaderCount: Int = 100,
        maximumBodyBytes: Int = 64 * 1024
    ) {
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.maximumBodyBytes = maximumBodyBytes
    }
}
