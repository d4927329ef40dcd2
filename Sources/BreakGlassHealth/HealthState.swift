/// How well something works: a pathway, a gateway-wide check, or the gateway as a whole.
public enum HealthState: String, Sendable, Codable, Comparable {
    case healthy
    /// Works, with a problem that needs attention (a failed probe not yet repeated, a certificate near expiry).
    case degraded
    /// Does not work.
    case failing
    /// Not probed yet, or never (`probe: false`).
    case unknown

    /// The value of the `breakglass_pathway_state` and `breakglass_health_state` gauges.
    var gaugeValue: Int {
        switch self {
        case .healthy: 0
        case .degraded: 1
        case .failing: 2
        case .unknown: 3
        }
    }

    private var severity: Int {
        switch self {
        case .healthy, .unknown: 0
        case .degraded: 1
        case .failing: 2
        }
    }

    /// Orders by severity: healthy and unknown, then degraded, then failing.
    public static func < (lhs: HealthState, rhs: HealthState) -> Bool { lhs.severity < rhs.severity }
}
