import Foundation

/// Where and why a probe failed.
public struct ProbeFailure: Error, Sendable, Codable, Equatable {
    /// The step that failed: `login`, `connect`, `request`, `tunnel`, `banner`, `release` or `audit`.
    public var step: String
    /// A stable code: the gateway's error code when it gave one, else `STEP_failed`.
    public var code: String
    /// What went wrong, in words; may name addresses and files (withheld on the network).
    public var message: String
    /// When the step failed.
    public var at: Date

    /// A failure of `step`; a nil `code` gives `STEP_failed`.
    public init(step: String, message: String, at: Date, code: String? = nil) {
        self.step = step
        self.code = code ?? "\(step)_failed"
        self.message = message
        self.at = at
    }
}

/// One step of a probe and how long it took.
public struct ProbeStep: Sendable, Codable, Equatable {
    /// The step, as named in `ProbeFailure.step`.
    public var name: String
    /// How long the step took (`ms` in JSON).
    public var milliseconds: Double

    enum CodingKeys: String, CodingKey {
        case name
        case milliseconds = "ms"
    }
}

/// One pathway's probe in one round.
public struct PathwayProbeResult: Sendable, Codable, Equatable {
    /// The pathway probed.
    public var pathway: String
    /// What the probe does, e.g. `GET /healthz → 200`.
    public var probe: String
    /// The session of the probe's grant; nil when no grant was issued.
    public var session: String?
    /// The steps taken, in order, with their timings.
    public var steps: [ProbeStep]
    /// Why the probe failed; nil when it passed.
    public var failure: ProbeFailure?
    /// When the probe ended.
    public var finishedAt: Date

    /// Whether the probe passed: no failure.
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
    /// What the check found.
    public var state: HealthState
    /// What was found, in words; may name files (withheld on the network).
    public var detail: String
}

/// Everything one self-test round found.
public struct ProbeRoundReport: Sendable, Codable, Equatable {
    /// When the round began.
    public var startedAt: Date
    /// How long the round took (`ms` in JSON).
    public var milliseconds: Double
    /// The one PAM login the round's grants come from.
    public var login: ProbeStep?
    /// Each probed pathway's result.
    public var pathways: [PathwayProbeResult]
    /// The gateway-wide checks made with the round.
    public var checks: [HealthCheck]

    enum CodingKeys: String, CodingKey {
        case login, pathways, checks
        case startedAt = "started_at"
        case milliseconds = "ms"
    }

    /// Whether every pathway passed and no check is failing.
    public var passed: Bool { pathways.allSatisfy(\.passed) && !checks.contains { $0.state == .failing } }
}
