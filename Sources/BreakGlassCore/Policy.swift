import Foundation

/// A validated policy: gateway settings, groups and pathways. Build it with `PolicyLoader`.
public struct Policy: Sendable {
    /// The `gateway:` section: listener, keys, storage and limits.
    public var gateway: GatewaySettings
    /// Group name → member user names.
    public var groups: [String: Set<String>]
    /// Pathway name → pathway.
    public var pathways: [String: Pathway]
    /// Self-tests; nil when the policy has no `probes:` section.
    public var probes: ProbeSettings?
    /// Where notifications of every grant, revocation and health change go.
    public var alerts: [AlertSinkSettings]

    /// A policy with the given sections.
    public init(
        gateway: GatewaySettings, groups: [String: Set<String>], pathways: [String: Pathway], probes: ProbeSettings? = nil,
        alerts: [AlertSinkSettings] = []
    ) {
        self.gateway = gateway
        self.groups = groups
        self.pathways = pathways
        self.probes = probes
        self.alerts = alerts
    }

    /// The pathway whose name is closest to `name` (at most one edit in three letters away, and at
    /// least one), for a "did you mean"; nil when none is that close.
    public func closestPathway(to name: String) -> String? {
        let asked = Array(name.utf8.prefix(128))
        let limit = max(1, asked.count / 3)
        var best: (name: String, distance: Int)?
        for candidate in pathways.keys.sorted() {
            let distance = Self.editDistance(asked, Array(candidate.utf8))
            if distance <= limit, distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        return best?.name
    }

    /// Levenshtein distance between two byte strings (names are ASCII).
    static func editDistance(_ left: [UInt8], _ right: [UInt8]) -> Int {
        var previous = Array(0...right.count)
        for (row, byte) in left.enumerated() {
            var current = [row + 1] + Array(repeating: 0, count: right.count)
            for column in 0..<right.count {
                current[column + 1] = Swift.min(
                    previous[column + 1] + 1, current[column] + 1, previous[column] + (byte == right[column] ? 0 : 1))
            }
            previous = current
        }
        return previous[right.count]
    }

    /// Decides a grant request for an authenticated user. The decision is a value; nothing is changed.
    public func decide(_ request: GrantRequest) -> PolicyDecision {
        if let probes, request.user == probes.user {
            return .deny(BreakGlassError(.forbidden, "user \(request.user) is the probe identity: it can get probe grants only"))
        }
        guard let pathway = pathways[request.pathway] else {
            return .deny(BreakGlassError(.unknownPathway, "no pathway named \"\(request.pathway)\""))
        }
        if let blocks = pathway.sourceCIDRs {
            guard let source = request.source, blocks.contains(where: { $0.contains(source) }) else {
                let from = request.source.map { "\($0)" } ?? "an unknown address"
                return .deny(
                    BreakGlassError(.forbidden, "pathway \(pathway.name) does not accept requests from \(from)")
                )
            }
        }
        guard isAllowed(user: request.user, on: pathway) else {
            return .deny(BreakGlassError(.forbidden, "user \(request.user) is not allowed on pathway \(pathway.name)"))
        }
        let ticket = request.ticket.flatMap { $0.isEmpty ? nil : $0 }
        if let pattern = pathway.requireTicket {
            guard let ticket else {
                return .deny(
                    BreakGlassError(.forbidden, "pathway \(pathway.name) requires a ticket matching \(pattern.pattern)")
                )
            }
            guard pattern.matches(ticket) else {
                return .deny(
                    BreakGlassError(
                        .forbidden,
                        "ticket \"\(ticket)\" does not match \(pattern.pattern), required by pathway \(pathway.name)"
                    )
                )
            }
        }
        let duration = request.duration ?? pathway.defaultDuration
        guard duration > .zero else {
            return .deny(BreakGlassError(.invalidRequest, "duration must be positive"))
        }
        guard duration <= pathway.maxDuration else {
            return .deny(
                BreakGlassError(
                    .forbidden,
                    "duration \(duration.policyText) exceeds max_duration \(pathway.maxDuration.policyText) of pathway \(pathway.name)"
                )
            )
        }
        return .allow(
            GrantTerms(user: request.user, pathway: pathway.name, reason: request.reason, ticket: ticket, duration: duration)
        )
    }

    /// True when the user is listed on the pathway directly or through one of its groups.
    public func isAllowed(user: String, on pathway: Pathway) -> Bool {
        if pathway.allowUsers.contains(user) { return true }
        return pathway.allowGroups.contains { groups[$0]?.contains(user) ?? false }
    }
}
