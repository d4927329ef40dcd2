/// The `gateway:` section of a policy.
public struct GatewaySettings: Sendable, Equatable {
    /// The gateway's identity: token issuer and audit log origin.
    public var id: String
    /// Where the TLS listener accepts clients.
    public var listen: ListenAddress
    /// Absolute path of the PEM certificate chain.
    public var tlsCertificate: String
    /// Absolute path of the PEM private key for TLS.
    public var tlsPrivateKey: String
    /// Absolute path of the Ed25519 token signing key (PEM PKCS#8).
    public var tokenKey: String
    /// How logins are checked with PAM.
    public var pam: PAMSettings
    /// Limits on failed logins.
    public var lockout: LockoutPolicy
    /// Connection caps, deadlines and the pace of denial records.
    public var limits: GatewayLimits
    /// Where and how the audit log is kept; nil only in tests that inject their own sink.
    public var audit: AuditSettings?
    /// Absolute path of the operators' unix socket (revocation); nil: `admin.sock` in the audit folder.
    public var adminSocket: String?
    /// A group whose members may use the admin socket besides root and the gateway's user; nil: none.
    public var adminGroup: String?
    /// Where `/v1/health` and `/metrics` are served.
    public var status: StatusEndpoint

    /// Settings with the given values.
    public init(
        id: String,
        listen: ListenAddress,
        tlsCertificate: String,
        tlsPrivateKey: String,
        tokenKey: String,
        pam: PAMSettings,
        lockout: LockoutPolicy,
        limits: GatewayLimits = GatewayLimits(),
        audit: AuditSettings? = nil,
        adminSocket: String? = nil,
        adminGroup: String? = nil,
        status: StatusEndpoint = .listener
    ) {
        self.id = id
        self.listen = listen
        self.tlsCertificate = tlsCertificate
        self.tlsPrivateKey = tlsPrivateKey
        self.tokenKey = tokenKey
        self.pam = pam
        self.lockout = lockout
        self.limits = limits
        self.audit = audit
        self.adminSocket = adminSocket
        self.adminGroup = adminGroup
        self.status = status
    }

    /// Where the admin socket is: `admin_socket`, or `admin.sock` in the audit folder.
    public var adminSocketPath: String? {
        adminSocket ?? audit.map { $0.directory + "/admin.sock" }
    }
}

/// The `gateway.audit:` section.
public struct AuditSettings: Sendable, Equatable {
    /// Absolute path of the log folder (made when missing).
    public var directory: String
    /// Absolute path of the Ed25519 checkpoint signing key (PEM PKCS#8), separate from the token key.
    public var key: String
    /// Folders that receive every new checkpoint.
    public var mirrors: [String]
    /// A command (argv) that receives every new checkpoint on standard input.
    public var checkpointHook: [String]?
    /// Space kept for denials and alarms when the disk fills (bytes).
    public var reserve: Int
    /// Free space below which the log reports itself degraded (bytes).
    public var warnFree: Int
    /// Size segment files are preallocated to (bytes).
    public var segmentSize: Int

    /// Settings with the given values; the defaults are the policy's.
    public init(
        directory: String,
        key: String,
        mirrors: [String] = [],
        checkpointHook: [String]? = nil,
        reserve: Int = 1 << 20,
        warnFree: Int = 1 << 30,
        segmentSize: Int = 64 << 20
    ) {
        self.directory = directory
        self.key = key
        self.mirrors = mirrors
        self.checkpointHook = checkpointHook
        self.reserve = reserve
        self.warnFree = warnFree
        self.segmentSize = segmentSize
    }
}

/// Where the gateway listens.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A host name or IP address (IPv6 without brackets).
    public var host: String
    /// The TCP port; 0 lets the system choose a free one.
    public var port: Int

    /// The address `host`:`port`.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPV6]:PORT`; port 0 asks the system for a free port.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            guard after.hasPrefix(":") else { return nil }
            portText = after.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = Int(portText), port <= 65535
        else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// `HOST:PORT`, with an IPv6 host in brackets.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The `gateway.pam:` section.
public struct PAMSettings: Sendable, Equatable {
    /// The PAM service name (the file name in the confdir).
    public var service: String
    /// Absolute path of a private PAM configuration folder; nil uses the system's /etc/pam.d.
    public var confdir: String?
    /// How long every failed login takes at least, so that failures look alike in time.
    public var failureDelay: Duration
    /// PAM worker threads (and so concurrent PAM conversations). One by default: some modules are not
    /// safe to run concurrently in one process (pam_oath with a shared users file loses updates).
    public var threads: Int
    /// Logins allowed to wait for a worker before new ones get `unavailable`.
    public var maxPending: Int

    /// Settings with the given values; the defaults are the policy's.
    public init(
        service: String,
        confdir: String?,
        failureDelay: Duration = .seconds(1),
        threads: Int = 1,
        maxPending: Int = 64
    ) {
        self.service = service
        self.confdir = confdir
        self.failureDelay = failureDelay
        self.threads = threads
        self.maxPending = maxPending
    }
}

/// The `gateway.lockout:` section: failed-login limits per user at one source address, per source
/// address, and a progressive delay per user across sources.
public struct LockoutPolicy: Sendable, Equatable {
    /// Failures of one user from one source within `window` that lock that user at that source.
    public var failures: Int
    /// How far back failed logins count, for every limit here.
    public var window: Duration
    /// How long a lock lasts.
    public var duration: Duration
    /// Failures from one source address within `window` (any users) that lock that address.
    public var sourceFailures: Int
    /// Longest delay before PAM runs for a user whose logins failed `failures` times or more within
    /// `window`, from any sources: the delay doubles with each further failure up to this. Zero turns
    /// the delay off.
    public var userDelayMax: Duration

    /// Settings with the given values; the defaults are the policy's.
    public init(
        failures: Int = 5,
        window: Duration = .seconds(300),
        duration: Duration = .seconds(900),
        sourceFailures: Int = 50,
        userDelayMax: Duration = .seconds(5)
    ) {
        self.failures = failures
        self.window = window
        self.duration = duration
        self.sourceFailures = sourceFailures
        self.userDelayMax = userDelayMax
    }
}

/// Where the gateway serves its health (`/v1/health`) and metrics (`/metrics`), the `gateway.status`
/// key. Wherever they are served over the network their errors are reported as step and code only,
/// without paths or addresses; the admin socket always has the details (`/v1/admin/health`).
public enum StatusEndpoint: Sendable, Equatable {
    /// On the TLS listener, beside the API (the default: load balancers probe `?ready`).
    case listener
    /// On the admin socket only.
    case admin
    /// On a plain HTTP listener of their own at this address (e.g. a monitoring network).
    case address(ListenAddress)
}
