import ArgumentParser

@main
struct Breakglass: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breakglass",
        abstract: "Emergency access gateway: time-boxed, audited grants to internal services after PAM login.",
        discussion: """
            On-call engineer:   breakglass login PATHWAY --reason "..."   then   breakglass token PATHWAY
            Operator:           breakglass serve --config Policies/demo.yaml
            Gateway URL and CA: --gateway / --ca, or BREAKGLASS_GATEWAY / BREAKGLASS_CA.
            """,
        subcommands: [
            LoginCommand.self, TokenCommand.self, StatusCommand.self, ServeCommand.self, PolicyCommand.self,
            AuditCommand.self, KeysCommand.self, CertsCommand.self,
        ]
    )
}
