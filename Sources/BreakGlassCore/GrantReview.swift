import Foundation

/// What a policy says about a live grant issued under an earlier one (a reload, or a start after
/// the policy changed): keep it, end it sooner, or end it now.
public enum GrantReview: Sendable, Equatable {
    case keep
    /// The pathway's `max_duration` dropped: the grant ends at this earlier time.
    case shorten(expiresAt: Date)
    /// The grant is no longer allowed; the text says why.
    case end(String)
}

extension Policy {
    /// Reviews a live grant of `user` on `pathway`. `previous` is the policy it was issued under
    /// when known (a reload): a pathway whose upstream moved ends its grants, since a grant was
    /// decided for one destination. Ticket rules apply to new grants only; source blocks are checked
    /// on every request anyway.
    public func review(
        user: String, pathway name: String, tag: Grant.Tag?, issuedAt: Date, expiresAt: Date, previous: Policy?
    ) -> GrantReview {
        guard let pathway = pathways[name] else { return .end("pathway \(name) is no longer in the policy") }
        if let before = previous?.pathways[name] {
            if before.kind != pathway.kind { return .end("pathway \(name) is now a \(pathway.kind.rawValue) pathway") }
            if before.upstream != pathway.upstream { return .end("pathway \(name) now leads to another upstream") }
        }
        if tag == .probe {
            guard let probes, probes.user == user else { return .end("user \(user) is no longer the probe identity") }
        } else {
            if let probes, probes.user == user { return .end("user \(user) is now the probe identity") }
            guard isAllowed(user: user, on: pathway) else { return .end("user \(user) is no longer allowed on pathway \(name)") }
        }
        let latest = issuedAt.addingTimeInterval(TimeInterval(pathway.maxDuration.totalMilliseconds) / 1000)
        return latest < expiresAt ? .shorten(expiresAt: latest) : .keep
    }
}
