import Foundation

/// Where and why a probe failed.
public struct ProbeFailure: Error, Sendable, Codable, Equatable {
    /// The step that failed: `login`, `connect`, `request`, `tunnel`, `banner`, `release` or `audit`.
    public var step: String
    /// A stable code: the gateway's error code when it gave one, else `STEP_failed`.
    public var code: String
    /// What went wrong, in words; may name addresses and files (withheld on the network).
    public var message: String
    public var at: Date

    public init(step: String, message: String, at: Date, code: String? = nil) {
        self.step = step
        self.code = code ?? "\(step)_failed"
        self.message = message
        self.at = at
    }
}

/// One step of a probe and how long it took.
public struct ProbeStep: Sendable, Codable, Equatable {
    public var name: String
    public var milliseconds: Double

    enum CodingKeys: String, CodingKey {
        case name
        case milliseconds = "ms"
    }
}

/// One pathway's probe in one round.
public struct PathwayProbeResult: Sendable, Codable, Equatable {
    public var pathway: String
    /// What the probe does, e.g. `GET /healthz → 200`.
    public var probe: String
    public var session: String?
    public var steps: [ProbeStep]
    public var failure: ProbeFailure?
    public var finishedAt: Date

    public var passed: Bool { failure == nil }

    enum CodingKeys: String, CodingKey {
        case pathway, probe, session, steps, failure
        case finishedAt = "finished_at"
    }
}

/// A gateway-wide check made with each round.
public struct HealthCheck: Sendable, Codable, Equatable {
    /// `certificate`, `token_key`, `audit`, `policy` or `clock`.
    public var name: String
    public var state: HealthState
    public var detail: String
}

/// Everything one self-test round found.
public struct ProbeRoundReport: Sendable, Codable, Equatable {
    public var startedAt: Date
    public var milliseconds: Double
    /// The one PAM login the round's grants come from.
    public var login: ProbeStep?
    public var pathways: [PathwayProbeResult]
    public var checks: [HealthCheck]

    enum CodingKeys: String, CodingKey {
        case login, pathways, checks
        case startedAt = "started_at"
        case milliseconds = "ms"
    }

    public var passed: Bool { pathways.allSatisfy(\.passed) && !checks.contains { $0.state == .failing } }
}
