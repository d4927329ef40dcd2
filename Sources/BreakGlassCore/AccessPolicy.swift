/// What a request on the data path asks for, once its token's signature and claims are verified.
public struct AccessRequest: Sendable, Equatable {
    /// An HTTP request's line, for the check of a probe grant.
    public struct Line: Sendable, Equatable {
        /// The method, as sent (`GET`).
        public var method: String
        /// The request target, as sent (`/p/PATHWAY/REST?QUERY`).
        public var uri: String
        /// The request has a body, or asks the upstream to take it as another method.
        public var carriesMore: Bool

        /// A request line with the given parts.
        public init(method: String, uri: String, carriesMore: Bool) {
            self.method = method
            self.uri = uri
            self.carriesMore = carriesMore
        }
    }

    /// The pathway the request names (in its path, or its CONNECT authority).
    public var pathway: String
    /// `http` for a proxied request, `tcp` for a tunnel.
    public var kind: Pathway.Kind
    /// The client's address as the gateway saw it.
    public var source: IPAddress?
    /// The grant is a probe grant: it allows nothing but its pathway's probe.
    public var probe: Bool
    /// The request line; nil for a tunnel.
    public var line: Line?

    /// A request with the given parts.
    public init(pathway: String, kind: Pathway.Kind, source: IPAddress?, probe: Bool, line: Line?) {
        self.pathway = pathway
        self.kind = kind
        self.source = source
        self.probe = probe
        self.line = line
    }
}

/// The policy's answer to a request on the data path.
public enum AccessDecision: Sendable, Equatable {
    /// Let through to this pathway (its session and the audit log are checked next).
    case allow(Pathway)
    /// Refused; the error carries the code and the reason.
    case deny(BreakGlassError)
}

/// Request-time access, as a value: the checks of the policy in force on every proxied request and
/// tunnel. Nothing is changed; the proxy records the decision, then acts on it.
public enum AccessPolicy {
    /// Decides `request` under `policy`: the pathway still exists (a reload may have removed it), is
    /// of the kind asked, is reachable from the source, and, for a probe grant, the request is the
    /// pathway's probe.
    public static func evaluate(_ request: AccessRequest, under policy: Policy) -> AccessDecision {
        let name = request.pathway
        guard let pathway = policy.pathways[name] else {
            return .deny(BreakGlassError(.unknownPathway, "no pathway \(name) in the policy in force"))
        }
        guard pathway.kind == request.kind else {
            let how = pathway.kind == .http ? "send HTTP requests to /p/\(name)/" : "open a tunnel with CONNECT \(name):PORT"
            return .deny(BreakGlassError(.invalidRequest, "pathway \(name) is a \(pathway.kind.rawValue) pathway: \(how)"))
        }
        if let blocks = pathway.sourceCIDRs {
            guard let source = request.source, blocks.contains(where: { $0.contains(source) }) else {
                return .deny(
                    BreakGlassError(.forbidden, "pathway \(name) is not reachable from \(request.source.map { "\($0)" } ?? "this address")")
                )
            }
        }
        if request.probe, let refusal = probeRefusal(pathway, line: request.line) {
            return .deny(refusal)
        }
        return .allow(pathway)
    }

    /// Why a probe grant may not make this request, or nil when it is the pathway's probe: the
    /// probe's method and path exactly, without a body, for an HTTP pathway; any tunnel for a TCP one.
    static func probeRefusal(_ pathway: Pathway, line: AccessRequest.Line?) -> BreakGlassError? {
        switch (pathway.probe, line) {
        case (.http(let method, let path, _, _), .some(let line)):
            var rest = String(line.uri.dropFirst("/p/\(pathway.name)".count))
            if rest.isEmpty { rest = "/" }
            guard line.method == method, rest == path, !line.carriesMore else {
                return BreakGlassError(.forbidden, "a probe grant allows only the probe of pathway \(pathway.name): \(method) \(path)")
            }
            return nil
        case (.tcp, nil):
            return nil
        default:
            return BreakGlassError(.forbidden, "a probe grant allows only the probe of pathway \(pathway.name)")
        }
    }
}
