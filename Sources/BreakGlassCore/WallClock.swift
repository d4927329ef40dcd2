import Foundation

/// The source of wall-clock time, so tests can move time.
public protocol WallClock: Sendable {
    func now() -> Date
}

/// The system's wall clock.
public struct SystemWallClock: WallClock {
    /// The system clock.
    public init() {}
    /// The current date.
    public func now() -> Date { Date() }
}
