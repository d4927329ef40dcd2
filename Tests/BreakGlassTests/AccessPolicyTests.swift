import BreakGlassCore
import Testing

/// Request-time access as a value: every branch of `AccessPolicy.evaluate`, with plain values.
@Suite struct AccessPolicyTests {
    /// `web` (http, loopback only, probe `GET /healthz`) and `db` (tcp, from anywhere).
    static func policy() throws -> Policy {
        var policy = try PolicyDecisionTests.policy()
        let web = try #require(Upstream("http://127.0.0.1:9001/base", kind: .http))
        let db = try #require(Upstream("127.0.0.1:5432", kind: .tcp))
        policy.pathways = [
            "web": Pathway(
                name: "web", kind: .http, upstream: web, allowUsers: ["alice"], allowGroups: [], defaultDuration: .seconds(900),
                maxDuration: .seconds(3600), sourceCIDRs: [try #require(CIDRBlock("127.0.0.0/8"))],
                probe: .http(method: "GET", path: "/healthz", status: 200...299, bodyContains: nil)),
            "db": Pathway(
                name: "db", kind: .tcp, upstream: db, allowUsers: ["alice"], allowGroups: [], defaultDuration: .seconds(900),
                maxDuration: .seconds(3600)),
        ]
        return policy
    }

    static let local = IPAddress("127.0.0.1")
    static let remote = IPAddress("192.0.2.7")

    static func get(_ uri: String, method: String = "GET", carriesMore: Bool = false) -> AccessRequest.Line {
        AccessRequest.Line(method: method, uri: uri, carriesMore: carriesMore)
    }

    static func code(_ decision: AccessDecision) -> BreakGlassError.Code? {
        if case .deny(let error) = decision { return error.code }
        return nil
    }

    @Test func allowsThePathwayAsked() throws {
        let policy = try Self.policy()
        let http = AccessPolicy.evaluate(
            AccessRequest(pathway: "web", kind: .http, source: Self.local, probe: false, line: Self.get("/p/web/x")), under: policy)
        #expect(http == .allow(try #require(policy.pathways["web"])))
        let tunnel = AccessPolicy.evaluate(
            AccessRequest(pathway: "db", kind: .tcp, source: Self.remote, probe: false, line: nil), under: policy)
        #expect(tunnel == .allow(try #require(policy.pathways["db"])))
    }

    /// A pathway gone from the policy (a reload removed it) refuses its old grants.
    @Test func anUnknownPathwayIsRefused() throws {
        let decision = AccessPolicy.evaluate(
            AccessRequest(pathway: "gone", kind: .http, source: Self.local, probe: false, line: Self.get("/p/gone/")),
            under: try Self.policy())
        #expect(Self.code(decision) == .unknownPathway)
    }

    @Test func theKindMustMatch() throws {
        let policy = try Self.policy()
        let connectToHTTP = AccessPolicy.evaluate(
            AccessRequest(pathway: "web", kind: .tcp, source: Self.local, probe: false, line: nil), under: policy)
        #expect(Self.code(connectToHTTP) == .invalidRequest)
        let httpToTCP = AccessPolicy.evaluate(
            AccessRequest(pathway: "db", kind: .http, source: Self.local, probe: false, line: Self.get("/p/db/")), under: policy)
        #expect(Self.code(httpToTCP) == .invalidRequest)
    }

    /// Source blocks hold for traffic as for grants; an unknown source is outside every block.
    @Test func sourceBlocksHold() throws {
        let policy = try Self.policy()
        for source in [Self.remote, nil] {
            let decision = AccessPolicy.evaluate(
                AccessRequest(pathway: "web", kind: .http, source: source, probe: false, line: Self.get("/p/web/")), under: policy)
            #expect(Self.code(decision) == .forbidden, "\(String(describing: source))")
        }
    }

    /// A probe grant allows its pathway's probe exactly: method, path, no body; any tunnel on a tcp pathway.
    @Test func aProbeGrantAllowsOnlyTheProbe() throws {
        let policy = try Self.policy()
        func decide(_ line: AccessRequest.Line?, pathway: String = "web", kind: Pathway.Kind = .http) -> AccessDecision {
            AccessPolicy.evaluate(AccessRequest(pathway: pathway, kind: kind, source: Self.local, probe: true, line: line), under: policy)
        }
        #expect(Self.code(decide(Self.get("/p/web/healthz"))) == nil)
        for line in [
            Self.get("/p/web/healthz", method: "POST"), Self.get("/p/web/healthz?x=1"), Self.get("/p/web/admin"),
            Self.get("/p/web/healthz", carriesMore: true), Self.get("/p/web"),
        ] {
            #expect(Self.code(decide(line)) == .forbidden, "\(line)")
        }
        #expect(Self.code(decide(nil, pathway: "db", kind: .tcp)) == nil)
    }
}
