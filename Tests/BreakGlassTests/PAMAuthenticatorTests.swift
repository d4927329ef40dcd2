import BreakGlassPAM
import BreakGlassTestSupport
import Foundation
import Logging
import Testing

@Suite struct PAMAuthenticatorTests {
    static func authenticator(_ stack: PAMTestStack) -> PAMAuthenticator {
        PAMAuthenticator(service: stack.service, confdir: stack.confdir, threads: 2, maxPending: 8, logger: TestLog().logger(label: "test"))
    }

    @Test func passwordAndCodeThroughPrivateConfdir() async throws {
        let directory = try TestDirectory("pam")
        defer { directory.remove() }
        let stack = try await PAMTestStack(in: directory, users: ["alice": "correct horse", "bob": "battery staple"])
        let pam = Self.authenticator(stack)
        defer { Task { await pam.shutdown() } }

        let code = try await stack.code("alice")
        let good = try await pam.authenticate(user: "alice", password: "correct horse", oneTimeCode: code, remoteHost: "127.0.0.1").outcome
        #expect(good == .authenticated(amr: ["pwd", "otp", "mfa"]))

        // The same code again is refused: pam_oath only accepts codes newer than the last one.
        let reused = try await pam.authenticate(user: "alice", password: "correct horse", oneTimeCode: code, remoteHost: nil).outcome
        guard case .refused = reused else {
            Issue.record("a reused code was accepted: \(reused)")
            return
        }

        let wrongPassword = try await pam.authenticate(
            user: "bob", password: "nope", oneTimeCode: try await stack.code("bob"), remoteHost: nil
        ).outcome
        guard case .refused = wrongPassword else {
            Issue.record("a wrong password was accepted: \(wrongPassword)")
            return
        }

        let wrongCode = try await pam.authenticate(user: "bob", password: "battery staple", oneTimeCode: "000000", remoteHost: nil).outcome
        guard case .refused = wrongCode else {
            Issue.record("a wrong code was accepted: \(wrongCode)")
            return
        }

        let unknown = try await pam.authenticate(user: "mallory", password: "x", oneTimeCode: "123456", remoteHost: nil).outcome
        guard case .refused = unknown else {
            Issue.record("an unknown user was accepted: \(unknown)")
            return
        }

        // No code given while the stack asks for one: the conversation fails closed.
        let noCode = try await pam.authenticate(user: "bob", password: "battery staple", oneTimeCode: nil, remoteHost: nil).outcome
        guard case .refused(let detail) = noCode else {
            Issue.record("a login without a code was accepted: \(noCode)")
            return
        }
        #expect(detail.contains("asked for a one-time code and none was given"))
    }

    /// The token's `amr` says what the stack asked for: a stack that asks for nothing (pam_permit)
    /// claims no method, one that asks only for a password claims `pwd` (issue #17 item 5). Before
    /// the fix both claimed `pwd`.
    @Test func methodsAreWhatTheStackAskedFor() async throws {
        let directory = try TestDirectory("pam-methods")
        defer { directory.remove() }
        let stack = try await PAMTestStack(in: directory, users: ["alice": "correct horse"])
        try directory.write("pam/pam.d/permit", "auth required pam_permit.so\naccount required pam_permit.so\n")
        try directory.write(
            "pam/pam.d/password", "auth required pam_pwdfile.so pwdfile=\(directory.file("pam/passwd"))\naccount required pam_permit.so\n")
        for (service, expected) in [("permit", [String]()), ("password", ["pwd"])] {
            let pam = PAMAuthenticator(
                service: service, confdir: stack.confdir, threads: 1, maxPending: 1, logger: TestLog().logger(label: "t"))
            let outcome = try await pam.authenticate(user: "alice", password: "correct horse", oneTimeCode: "123456", remoteHost: nil)
                .outcome
            #expect(outcome == .authenticated(amr: expected), "\(service): \(outcome)")
            await pam.shutdown()
        }
    }

    /// A conversation that refused anything (here a third secret, asked by an `optional` module) fails
    /// the login, even when the stack's own rules would let it pass: the gateway answers only the
    /// questions it knows, and a stack that asks others is not one it can vouch for. Before, the stack
    /// ignored the failed optional module and the login succeeded.
    @Test func aRefusedConversationFailsTheLoginWhateverTheStackSays() async throws {
        let directory = try TestDirectory("pam-refused")
        defer { directory.remove() }
        let stack = try await PAMTestStack(in: directory, users: ["alice": "correct horse"])
        let oath = "pam_oath.so usersfile=\(directory.file("pam/oath.users")) window=2 digits=6"
        try directory.write(
            "pam/pam.d/third",
            """
            auth required pam_pwdfile.so pwdfile=\(directory.file("pam/passwd"))
            auth required \(oath)
            auth optional \(oath)
            account required pam_permit.so

            """)
        let pam = PAMAuthenticator(
            service: "third", confdir: stack.confdir, threads: 1, maxPending: 1, logger: TestLog().logger(label: "t"))
        let outcome = try await pam.authenticate(
            user: "alice", password: "correct horse", oneTimeCode: try await stack.code("alice"), remoteHost: nil
        ).outcome
        await pam.shutdown()
        guard case .refused(let detail) = outcome else {
            Issue.record("a login whose conversation refused a third secret ended \(outcome)")
            return
        }
        #expect(detail.contains("more than two secrets"), "\(detail)")
    }

    @Test func brokenStackIsReportedAsBroken() async throws {
        let directory = try TestDirectory("pam-broken")
        defer { directory.remove() }
        try directory.write("pam.d/broken", "auth required pam_does_not_exist.so\naccount required pam_permit.so\n")
        try directory.write("pam.d/other", "auth required pam_deny.so\n")
        let pam = PAMAuthenticator(
            service: "broken", confdir: directory.file("pam.d"), threads: 1, maxPending: 1, logger: TestLog().logger(label: "t"))
        defer { Task { await pam.shutdown() } }
        let outcome = try await pam.authenticate(user: "alice", password: "x", oneTimeCode: "1", remoteHost: nil).outcome
        switch outcome {
        case .broken, .refused: break
        case .authenticated: Issue.record("a stack with a missing module authenticated")
        }
        // A confdir without the service and without `other` cannot start a transaction at all.
        let empty = try TestDirectory("pam-empty")
        defer { empty.remove() }
        let none = PAMAuthenticator(
            service: "breakglass", confdir: empty.path, threads: 1, maxPending: 1, logger: TestLog().logger(label: "t"))
        defer { Task { await none.shutdown() } }
        guard case .broken = try await none.authenticate(user: "alice", password: "x", oneTimeCode: nil, remoteHost: nil).outcome else {
            Issue.record("an empty confdir was not reported as broken")
            return
        }
    }
}
