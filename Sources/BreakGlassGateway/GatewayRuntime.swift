import BreakGlassConfig
import BreakGlassTokens
import NIOSSL
import Synchronization

/// What every part of the gateway reads and a reload replaces: the policy in force, the TLS context
/// for new connections, and the token authority. The grant flow, the proxy, the audit trail and the
/// health checks each hold this, not one another.
public final class GatewayRuntime: Sendable {
    /// The policy in force and its last-known-good history.
    public let store: PolicyStore
    private let resources: Mutex<GatewayResources>

    /// A runtime with `resources` made from the policy in force.
    public init(store: PolicyStore, resources: GatewayResources) {
        self.store = store
        self.resources = Mutex(resources)
    }

    /// The TLS context for new connections.
    public var tlsContext: NIOSSLContext { resources.withLock { $0.tlsContext } }

    /// The token authority in force.
    public var tokens: TokenAuthority { resources.withLock { $0.tokens } }

    /// Puts the resources of a newly loaded policy in force (at a reload, before it commits).
    func replace(_ new: GatewayResources) {
        resources.withLock { $0 = new }
    }
}
