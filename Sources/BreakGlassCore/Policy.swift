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
