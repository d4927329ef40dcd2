import Foundation

/// A real private PAM stack for tests: pam_pwdfile (password) then pam_oath (TOTP), in its own confdir.
public struct PAMTestStack: Sendable {
    public struct User: Sendable {
        public var name: String
        public var password: String
        /// Hex TOTP secret.
        public var secret: String
    }

    /// The confdir to give `pam_start_confdir`.
    public let confdir: String
    public let service: String
    public let users: [String: User]

    /// Writes the stack for these users (name → password) into `directory`/pam.
    /// `window`: how many 30-second steps ahead pam_oath accepts a code.
    public init(
        in directory: TestDirectory, users passwords: [String: String], service: String = "breakglass", window: Int = 2
    ) async throws {
        let folder = directory.file("pam")
        try FileManager.default.createDirectory(atPath: folder + "/pam.d", withIntermediateDirectories: true)
        var users: [String: User] = [:]
        var passwd = ""
        var oath = ""
        for (name, password) in passwords.sorted(by: { $0.key < $1.key }) {
            let secret = (0..<20).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            let hash = try await Self.hash(password)
            passwd += "\(name):\(hash)\n"
            oath += "HOTP/T30/6 \(name) - \(secret)\n"
            users[name] = User(name: name, password: password, secret: secret)
        }
        try passwd.write(toFile: folder + "/passwd", atomically: false, encoding: .utf8)
        try oath.write(toFile: folder + "/oath.users", atomically: false, encoding: .utf8)
        let stack = """
            auth     requisite  pam_pwdfile.so pwdfile=\(folder)/passwd
            auth     required   pam_oath.so usersfile=\(folder)/oath.users window=\(window) digits=6
            account  required   pam_permit.so

            """
        try stack.write(toFile: folder + "/pam.d/\(service)", atomically: false, encoding: .utf8)
        try "auth required pam_deny.so\naccount required pam_deny.so\n".write(
            toFile: folder + "/pam.d/other",
            atomically: false,
            encoding: .utf8
        )
        self.confdir = folder + "/pam.d"
        self.service = service
        self.users = users
    }

    /// The user's TOTP code, `steps` 30-second steps from now, from `oathtool`.
    public func code(_ user: String, steps: Int = 0) async throws -> String {
        guard let secret = users[user]?.secret else { throw TestSupportError("no test user \(user)") }
        guard let oathtool = ProcessRunner.which("oathtool") else {
            throw TestSupportError("oathtool is not installed (Scripts/test installs it)")
        }
        var arguments = ["--totp"]
        if steps != 0 { arguments += ["-N", "now + \(steps * 30) seconds"] }
        let result = try await ProcessRunner.run(oathtool, arguments + [secret])
        guard result.status == 0 else { throw TestSupportError("oathtool failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func password(_ user: String) -> String { users[user]?.password ?? "" }

    static func hash(_ password: String) async throws -> String {
        guard let openssl = ProcessRunner.which("openssl") else { throw TestSupportError("openssl is not installed") }
        let result = try await ProcessRunner.run(openssl, ["passwd", "-6", "-stdin"], stdin: password + "\n")
        guard result.status == 0 else { throw TestSupportError("openssl passwd failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
