import BreakGlassCore
import CPAM
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Authenticates users through a PAM stack on a bounded pool of threads, never on an event loop.
public final class PAMAuthenticator: Sendable {
    /// What PAM said about one login.
    public enum Outcome: Sendable, Equatable {
        /// Authenticated and the account is usable; `amr` lists the methods used.
        case authenticated(amr: [String])
        /// Refused: wrong password, code or user, or an unusable account. `detail` is for logs only.
        case refused(detail: String)
        /// The PAM stack itself failed (module missing, misconfigured). `detail` is for logs only.
        case broken(detail: String)
    }

    /// An outcome with where the time went: waiting for a worker, and inside the PAM modules.
    public struct Attempt: Sendable {
        /// What PAM said.
        public var outcome: Outcome
        /// Time spent waiting for a free worker.
        public var waited: Duration
        /// Time spent inside the PAM modules.
        public var ran: Duration
    }

    /// The PAM service name (the stack's file name).
    public let service: String
    /// The folder holding the PAM service file; nil: the system's default (`/etc/pam.d`).
    public let confdir: String?
    private let pool: NIOThreadPool
    private let capacity: Int
    private let inFlight = Atomic<Int>(0)
    private let logger: Logger

    /// Starts `threads` PAM workers; at most `threads + maxPending` logins are in progress at once.
    public init(service: String, confdir: String?, threads: Int, maxPending: Int, logger: Logger) {
        self.service = service
        self.confdir = confdir
        self.pool = NIOThreadPool(numberOfThreads: max(1, threads))
        self.capacity = max(1, threads) + max(0, maxPending)
        self.logger = logger
        pool.start()
    }

    /// Stops the workers after the logins in progress.
    public func shutdown() async {
        try? await pool.shutdownGracefully()
    }

    /// Runs `pam_authenticate` and `pam_acct_mgmt` for the user on a worker thread.
    ///
    /// Throws `unavailable` when too many logins are already in progress.
    public func authenticate(
        user: String,
        password: String,
        oneTimeCode: String?,
        remoteHost: String?
    ) async throws(BreakGlassError) -> Attempt {
        let admitted = inFlight.add(1, ordering: .relaxed).newValue <= capacity
        defer { inFlight.subtract(1, ordering: .relaxed) }
        guard admitted else {
            throw BreakGlassError(.unavailable, "too many logins in progress; retry in a moment", retryAfterSeconds: 1)
        }
        let service = self.service
        let confdir = self.confdir
        let submitted = ContinuousClock.now
        do {
            return try await pool.runIfActive { () -> Attempt in
                let started = ContinuousClock.now
                let outcome = Self.run(
                    service: service,
                    confdir: confdir,
                    user: user,
                    password: password,
                    oneTimeCode: oneTimeCode,
                    remoteHost: remoteHost
                )
                return Attempt(outcome: outcome, waited: submitted.duration(to: started), ran: started.duration(to: .now))
            }
        } catch {
            throw BreakGlassError(.unavailable, "the authentication service is shutting down")
        }
    }

    /// One whole PAM transaction; blocking, for a worker thread only.
    static func run(
        service: String,
        confdir: String?,
        user: String,
        password: String,
        oneTimeCode: String?,
        remoteHost: String?
    ) -> Outcome {
        let conversation = PAMConversation(password: password, oneTimeCode: oneTimeCode)
        let context = Unmanaged.passRetained(conversation)
        defer { context.release() }
        var conv = pam_conv(conv: PAMConversation.function, appdata_ptr: context.toOpaque())
        var handle: OpaquePointer?
        let started: Int32
        if let confdir {
            started = pam_start_confdir(service, user, &conv, confdir, &handle)
        } else {
            started = pam_start(service, user, &conv, &handle)
        }
        guard started == PAM_SUCCESS, let handle else {
            return .broken(detail: "pam_start for service \(service) failed: \(describe(nil, started))")
        }
        var status = breakglass_pam_override_fail_delay(handle)
        if status == PAM_SUCCESS, let remoteHost {
            status = pam_set_item(handle, PAM_RHOST, remoteHost)
        }
        if status == PAM_SUCCESS {
            // An empty password never authenticates, whatever a module would otherwise allow.
            status = pam_authenticate(handle, Int32(bitPattern: UInt32(PAM_SILENT) | UInt32(PAM_DISALLOW_NULL_AUTHTOK)))
            if status == PAM_SUCCESS {
                status = pam_acct_mgmt(handle, Int32(bitPattern: UInt32(PAM_SILENT)))
            }
        }
        let detail = describe(handle, status)
        pam_end(handle, status)
        // A conversation that refused anything fails the login, whatever the stack's rules made of it
        // (an `optional` module whose question went unanswered).
        if status == PAM_SUCCESS, let refusal = conversation.refusal {
            return .refused(detail: "the stack passed a login whose conversation was refused: \(refusal)")
        }
        if status == PAM_SUCCESS {
            return .authenticated(amr: Self.methods(secretsGiven: conversation.secretsGiven))
        }
        let refusal = conversation.refusal.map { "; \($0)" } ?? ""
        switch status {
        case PAM_ABORT, PAM_BUF_ERR, PAM_SYSTEM_ERR, PAM_OPEN_ERR, PAM_SYMBOL_ERR, PAM_SERVICE_ERR, PAM_AUTHINFO_UNAVAIL:
            return .broken(detail: detail + refusal)
        default:
            return .refused(detail: detail + refusal)
        }
    }

    /// The methods (RFC 8176) a login used, from what the stack asked for: `pwd` only when it asked
    /// for a first secret, `otp` (and `mfa`) only when it asked for a second. A stack that asked for
    /// nothing claims nothing.
    static func methods(secretsGiven: Int) -> [String] {
        switch secretsGiven {
        case 0: []
        case 1: ["pwd"]
        default: ["pwd", "otp", "mfa"]
        }
    }

    static func describe(_ handle: OpaquePointer?, _ status: Int32) -> String {
        guard let text = pam_strerror(handle, status) else { return "PAM status \(status)" }
        return "\(String(cString: text)) (\(status))"
    }
}
