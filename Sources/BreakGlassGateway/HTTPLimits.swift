/// Bounds on what one HTTP connection may send and how long it may idle.
public struct HTTPLimits: Sendable {
    /// Largest header block (names and values) accepted; larger gets 431.
    public var maximumHeaderBytes: Int
    /// Most header fields accepted; more gets 431.
    public var maximumHeaderCount: Int
    /// Largest API request body; larger gets 413.
    public var maximumBodyBytes: Int
    /// A connection that sends nothing (handshake included) for this long is closed.
    public var idleTimeout: Duration

    public init(
        maximumHeaderBytes: Int = 16 * 1024,
        maximumHeaderCount: Int = 100,
        maximumBodyBytes: Int = 64 * 1024,
        idleTimeout: Duration = .seconds(30)
    ) {
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.maximumBodyBytes = maximumBodyBytes
        self.idleTimeout = idleTimeout
    }
}
