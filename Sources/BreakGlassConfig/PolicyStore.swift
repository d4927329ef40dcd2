import BreakGlassCore
import Foundation
import Synchronization

/// Holds the policy in force and reloads it; a rejected file leaves the last known good policy in force.
public final class PolicyStore: Sendable {
    /// The outcome of a reload.
    public enum ReloadOutcome: Sendable {
        /// The new file is in force.
        case loaded(LoadedPolicy)
        /// The new file was rejected; `keeping` stays in force.
        case rejected(PolicyValidationError, keeping: LoadedPolicy)
    }

    private struct State {
        var current: LoadedPolicy
        var lastRejection: (error: PolicyValidationError, at: Date)?
    }

    /// The path the policy is (re)loaded from.
    public let path: String
    private let state: Mutex<State>
    private let reloads = Atomic<Int>(0)

    /// Loads the file; throws when it is not valid (no policy, no gateway).
    public init(path: String, now: Date = Date()) throws(PolicyValidationError) {
        self.path = path
        let loaded = try PolicyLoader.load(path: path, now: now)
        self.state = Mutex(State(current: loaded, lastRejection: nil))
    }

    /// Starts from an already loaded policy.
    public init(loaded: LoadedPolicy) {
        self.path = loaded.file
        self.state = Mutex(State(current: loaded, lastRejection: nil))
    }

    /// The policy in force.
    public var current: LoadedPolicy { state.withLock { $0.current } }

    /// Changes whenever another policy comes into force: what was checked against the policy while
    /// it had this number still holds (read it before `current`).
    public var generation: Int { reloads.load(ordering: .acquiring) }

    /// The latest rejection, when the policy in force is older than the file (stale).
    public var lastRejection: (error: PolicyValidationError, at: Date)? { state.withLock { $0.lastRejection } }

    /// Reads the file again. `accept` may refuse a valid file for reasons outside it (a key that does not load).
    public func reload(
        now: Date = Date(),
        accept: (LoadedPolicy) async throws(PolicyValidationError) -> Void = { _ throws(PolicyValidationError) in }
    ) async -> ReloadOutcome {
        do throws(PolicyValidationError) {
            let loaded = try PolicyLoader.load(path: path, now: now)
            try await accept(loaded)
            state.withLock {
                // Counted first: a reader that sees the new policy also sees a new number.
                reloads.add(1, ordering: .releasing)
                $0.current = loaded
                $0.lastRejection = nil
            }
            return .loaded(loaded)
        } catch {
            let keeping = state.withLock {
                $0.lastRejection = (error, now)
                return $0.current
            }
            return .rejected(error, keeping: keeping)
        }
    }
}
