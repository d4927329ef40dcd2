import BreakGlassAPI
import BreakGlassConfig
import BreakGlassCore
import BreakGlassHealth
import BreakGlassProxy
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// The probes' grants: one short grant per probed pathway for the gateway's own self-test.
extension GrantService {
    /// `POST /v1/probe/grants`: the gateway's own self-test logs in (a real PAM login) and gets one
    /// short grant per pathway it probes, tagged `probe`: such a grant allows nothing but the
    /// pathway's probe. Only the `probes.user` identity may ask.
    public func requestProbeGrants(body: ByteBuffer, source: IPAddress?) async -> APIResponse {
        let started = ContinuousClock.now
        let sourceText = source.map { "\($0)" }
        let input: GrantRequestBody
        do {
            input = try GrantRequestBody.decode(body, probe: true)
        } catch {
            return refuse(error, user: nil, source: source, pathway: nil, reason: nil, ticket: nil)
        }
        let policy = store.current.policy
        guard let probes = policy.probes else {
            return refuse(BreakGlassError(.notFound, "this gateway has no probes section"), input: input, source: source)
        }
        guard input.user == probes.user else {
            return refuse(BreakGlassError(.forbidden, "only the probe identity may ask for probe grants"), input: input, source: source)
        }
        // The self-test connects from this machine: from anywhere else probe credentials are misused.
        let own = probes.connect.flatMap { IPAddress($0.host) }
        guard let source, source.isLoopback || source == own else {
            alerts?.fireOnce(
                Alert(
                    kind: "probe.misuse", time: clock.now(),
                    fields: [
                        "source": .string(sourceText ?? "unknown"), "detail": .string("probe grants were asked for from another machine"),
                    ]),
                every: .seconds(60))
            return refuse(
                BreakGlassError(.forbidden, "probe grants are for the gateway's own self-test, from this machine"), input: input,
                source: source)
        }
        var pathways: [Pathway] = []
        for name in Set(input.pathways).sorted() {
            guard let pathway = policy.pathways[name], pathway.probe != .disabled else {
                return refuse(
                    BreakGlassError(.unknownPathway, "no probed pathway named \"\(BoundedText.cut(name, bytes: 64))\""), input: input,
                    source: source)
            }
            pathways.append(pathway)
        }
        let amr: [String]
        switch await login(input, source: source, started: started) {
        case .refused(let error): return refuse(error, input: input, source: source)
        case .failed(let error): return await deny(error, input: input, source: sourceText)
        case .authenticated(let methods, _): amr = methods
        }
        let issuedAt = clock.now()
        let grants = pathways.map { pathway in
            Grant(
                session: Grant.newSessionID(), user: probes.user, pathway: pathway.name, reason: "probe round", ticket: nil,
                issuedAt: issuedAt,
                expiresAt: issuedAt.addingTimeInterval(TimeInterval(probes.grantDuration.totalMilliseconds) / 1000), amr: amr,
                source: sourceText, tag: .probe)
        }
        // Signed and recorded together, so that one group commit covers the round's grants.
        let outcomes = await withTaskGroup(of: (Int, Result<String, BreakGlassError>).self) { group in
            for (index, grant) in grants.enumerated() { group.addTask { (index, await self.issue(grant)) } }
            var outcomes: [Int: Result<String, BreakGlassError>] = [:]
            for await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        var issued: [ProbeGrantsAnswer.Grant] = []
        var failure: BreakGlassError?
        for (index, grant) in grants.enumerated() {
            switch outcomes[index] {
            case .success(let token):
                issued.append(
                    ProbeGrantsAnswer.Grant(pathway: grant.pathway, session: grant.session, token: token, expiresAt: grant.expiresAt))
            case .failure(let error):
                failure = failure ?? error
            case nil:
                failure = failure ?? BreakGlassError(.unavailable, "a probe grant was not issued")
            }
        }
        if let failure {
            // All or nothing: grants already issued end now rather than linger unused.
            await registry?.end(issued.map(\.session), as: .released, by: "the gateway (probe round refused)")
            return .error(failure)
        }
        logger.info("probe grants issued", metadata: ["pathways": "\(issued.count)", "source": "\(sourceText ?? "")"])
        return .json(.created, ProbeGrantsAnswer(grants: issued), headers: [("Cache-Control", "no-store")])
    }
}
