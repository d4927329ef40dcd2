import ArgumentParser

@main
struct Breakglass: AsyncParsableCommand {
    /// The release version: the one place it is written. `Scripts/package` reads it from the built binary
    /// (`breakglass --version`) for the Debian package's version.
    static let version = "0.1.0"

    /// What `breakglass --version` prints: the version and the git commit of the build (BuildCommitPlugin).
    static let versionLine = "breakglass \(version) (commit \(BuildCommit.value))"

    static let configuration = CommandConfiguration(
        commandName: "breakglass",
        abstract: "Emergency access gateway: time-boxed, audited grants to internal services after PAM login.",
        discussion: """
            On-call engineer:   breakglass login PATHWAY --reason "..."   then   breakglass token PATHWAY
                                breakglass tunnel PATHWAY --listen 127.0.0.1:15432   |   breakglass connect PATHWAY
                                breakglass logout PATHWAY
            Operator:           breakglass serve --config Policies/demo.yaml
                                breakglass sessions --config FILE   |   breakglass revoke --config FILE --session ID
            Gateway URL and CA: --gateway / --ca, or BREAKGLASS_GATEWAY / BREAKGLASS_CA.
            """,
        version: versionLine,
        subcommands: [
            LoginCommand.self, TokenCommand.self, StatusCommand.self, TunnelCommand.self, ConnectCommand.self, ProxyCommand.self,
            LogoutCommand.self,
            ServeCommand.self, SessionsCommand.self, RevokeCommand.self, PolicyCommand.self, AuditCommand.self, KeysCommand.self,
            CertsCommand.self, HealthCommand.self, SelftestCommand.self, DrillCommand.self,
        ]
    )
}
