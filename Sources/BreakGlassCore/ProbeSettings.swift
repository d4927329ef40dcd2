/// The `probes:` section: the gateway's own identity for self-tests, and how often and how hard it tests.
public struct ProbeSettings: Sendable, Equatable {
    /// The PAM user the probes log in as; it can get probe grants only.
    public var user: String
    /// Absolute path of the probe's credentials file (password and TOTP secret; mode 0600).
    public var credentials: String
    /// CA bundle (PEM) the probe trusts for the gateway's own listener.
    public var ca: String
    /// Where the probe connects; nil: the listen address (a wildcard address becomes loopback).
    public var connect: ListenAddress?
    /// The name checked in the gateway's certificate; nil: the host probed.
    public var serverName: String?
    /// Time between rounds, and the random spread added to it.
    public var interval: Duration
    /// The largest random delay added to `interval`.
    public var jitter: Duration
    /// Longest a pathway's probe may take, all steps together.
    public var timeout: Duration
    /// Pathways probed at once.
    public var parallelism: Int
    /// Lifetime of a probe grant.
    public var grantDuration: Duration
    /// Consecutive failed rounds that make a pathway `failing`.
    public var failAfter: Int
    /// Consecutive passed rounds that make a failing or degraded pathway `healthy` again.
    public var recoverAfter: Int
    /// The TLS certificate is reported `degraded` when it expires within this, `failing` within `certificateFail`.
    public var certificateWarn: Duration
    /// The TLS certificate is reported `failing` when it expires within this.
    public var certificateFail: Duration

    /// Settings with the given values.
    public init(
        user: String,
        credentials: String,
        ca: String,
        connect: ListenAddress? = nil,
        serverName: String? = nil,
        interval: Duration = .seconds(60),
        jitter: Duration = .seconds(5),
        timeout: Duration = .seconds(10),
        parallelism: Int = 4,
        grantDuration: Duration = .seconds(60),
        failAfter: Int = 2,
        recoverAfter: Int = 2,
        certificateWarn: Duration = .seconds(14 * 86_400),
        certificateFail: Duration = .seconds(2 * 86_400)
    ) {
        self.user = user
        self.credentials = credentials
        self.ca = ca
        self.connect = connect
        self.serverName = serverName
        self.interval = interval
        self.jitter = jitter
        self.timeout = timeout
        self.parallelism = parallelism
        self.grantDuration = grantDuration
        self.failAfter = failAfter
        self.recoverAfter = recoverAfter
        self.certificateWarn = certificateWarn
        self.certificateFail = certificateFail
    }
}

/// What a probe does on one pathway (the pathway's `probe:` key).
public enum PathwayProbe: Sendable, Equatable {
    /// An HTTP request through the proxy and the answer expected.
    case http(method: String, path: String, status: ClosedRange<Int>, bodyContains: String?)
    /// A tunnel through CONNECT; with a banner, the upstream's first bytes must start with it.
    case tcp(banner: String?)
    /// Not probed (`probe: false`).
    case disabled

    /// The probe of a pathway without a `probe:` key: `GET /` answered below 500, or a tunnel that opens.
    public static func standard(for kind: Pathway.Kind) -> PathwayProbe {
        kind == .http ? .http(method: "GET", path: "/", status: 100...499, bodyContains: nil) : .tcp(banner: nil)
    }

    /// A short text for reports, e.g. `GET /healthz → 200` or `connect`.
    public var summary: String {
        switch self {
        case .http(let method, let path, let status, let body):
            let expected = status.count == 1 ? "\(status.lowerBound)" : "\(status.lowerBound)-\(status.upperBound)"
            return "\(method) \(path) → \(expected)" + (body.map { " containing \"\($0)\"" } ?? "")
        case .tcp(let banner): return banner.map { "connect, banner \"\($0)\"" } ?? "connect"
        case .disabled: return "not probed"
        }
    }
}

/// One `alerts:` entry: where notifications go.
public struct AlertSinkSettings: Sendable, Equatable {
    /// How a sink delivers events.
    public enum Target: Sendable, Equatable {
        /// A program (argv) that receives each event as JSON on standard input.
        case exec([String])
        /// An https (or http) URL that receives each event as a JSON POST.
        case webhook(url: String, ca: String?)
    }

    /// A name for logs and metrics (`exec:PROGRAM` or the webhook's host unless given).
    public var name: String
    /// Where events go.
    public var target: Target
    /// Longest a delivery attempt may take.
    public var timeout: Duration
    /// Attempts per event before it is dropped (and the drop audited).
    public var attempts: Int
    /// Events waiting for this sink at most; more are dropped (and audited).
    public var queue: Int
    /// The folder an exec sink runs in (the policy file's), so that relative arguments mean what the policy says.
    public var workingDirectory: String?

    /// A sink with the given settings.
    public init(
        name: String, target: Target, timeout: Duration = .seconds(5), attempts: Int = 5, queue: Int = 256,
        workingDirectory: String? = nil
    ) {
        self.workingDirectory = workingDirectory
        self.name = name
        self.target = target
        self.timeout = timeout
        self.attempts = attempts
        self.queue = queue
    }
}
