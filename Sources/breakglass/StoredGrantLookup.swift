import BreakGlassClient
import Foundation

/// The stored, unexpired grant for a pathway, or a failure that says what to run.
enum StoredGrantLookup {
    static func live(_ pathway: String) throws -> StoredGrant {
        let stored: StoredGrant?
        do throws(ClientError) {
            stored = try TokenStore().load(pathway: pathway)
        } catch {
            throw CLIFailure(message: error.message)
        }
        guard let stored else {
            throw CLIFailure(message: "no grant stored for \(pathway): run breakglass login \(pathway) --reason \"...\"")
        }
        guard stored.grant.expiresAt > Date() else {
            throw CLIFailure(message: "the grant for \(pathway) expired at \(TimeFormat.local(stored.grant.expiresAt)); log in again")
        }
        return stored
    }

    /// The stored, unexpired grant for a pathway and a connector that opens tunnels with it.
    static func tunnel(_ pathway: String, caFile: String?) throws -> (stored: StoredGrant, connector: TunnelConnector) {
        let stored = try live(pathway)
        do throws(ClientError) {
            let connector = try TunnelConnector(gateway: stored.gateway, caFile: caFile, pathway: pathway, token: stored.grant.token)
            return (stored, connector)
        } catch {
            throw CLIFailure(message: error.message)
        }
    }

    /// The CA to trust: --ca, else $BREAKGLASS_CA, else the system roots.
    static func caFile(_ flag: String?) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let value = ProcessInfo.processInfo.environment["BREAKGLASS_CA"], !value.isEmpty { return value }
        return nil
    }
}
