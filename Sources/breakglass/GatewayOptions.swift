import ArgumentParser
import BreakGlassClient
import Foundation

/// Where the gateway is and which CA to trust; flags win over the environment.
struct GatewayOptions: ParsableArguments {
    @Option(name: .long, help: "Gateway URL, e.g. https://127.0.0.1:8443 (default: $BREAKGLASS_GATEWAY).")
    var gateway: String?

    @Option(name: .long, help: "PEM file of the CA that signed the gateway's certificate (default: $BREAKGLASS_CA, else system roots).")
    var ca: String?

    func resolvedGateway() throws -> String {
        if let gateway, !gateway.isEmpty { return gateway }
        if let value = ProcessInfo.processInfo.environment["BREAKGLASS_GATEWAY"], !value.isEmpty { return value }
        throw CLIFailure(message: "no gateway given: pass --gateway https://HOST:PORT or set BREAKGLASS_GATEWAY")
    }

    func resolvedCA() -> String? {
        StoredGrantLookup.caFile(ca)
    }

    func makeClient() throws -> GatewayClient {
        do {
            return try GatewayClient(gateway: try resolvedGateway(), caFile: resolvedCA())
        } catch let error as ClientError {
            throw CLIFailure(message: error.message)
        }
    }
}
