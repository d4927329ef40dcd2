import BreakGlassAuditFormat
import BreakGlassCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// Ends of sessions: release and revocation (`end`), the policy's review (`review`), and expiry, each audited once.
extension SessionRegistry {
    /// What `end` did: the sessions that were live and are ended now, and those of them whose end
    /// the audit log could not record (they are ended here all the same, and kept ended in the
    /// sessions file; but only a recorded end is certain to survive a restart).
    public struct Ended: Sendable {
        /// The sessions this call ended.
        public var sessions: [SessionInfo]
        /// Those of `sessions` whose end the audit log could not record.
        public var unrecorded: [SessionInfo]
        /// How many sessions this call ended.
        public var count: Int { sessions.count }
    }

    /// Ends sessions early (release or revocation): closes their connections at once, keeps them
    /// ended across restarts, and audits each end (awaited: the record is durable on return).
    @discardableResult
    public func end(_ sessions: [String], as ending: Ending, by actor: String, reason: String? = nil, detail: String? = nil) async -> Ended
    {
        var ended: [(SessionInfo, [any Channel])] = []
        state.withLock { state in
            for session in sessions {
                guard var entry = state.entries[session], entry.ended == nil else { continue }
                if entry.info.tag != .probe { state.ends += 1 }
                entry.ended = ending
                entry.timer?.cancel()
                ended.append((entry.info, Array(entry.channels.values)))
                entry.channels = [:]
                state.entries[session] = entry
            }
        }
        for (_, channels) in ended { for channel in channels { channel.close(promise: nil) } }
        guard !ended.isEmpty else { return Ended(sessions: [], unrecorded: []) }
        // In the file first (a cache of the log): it keeps the end even when the record fails.
        if ended.contains(where: { $0.0.tag != .probe }) { await saveNow() }
        var unrecorded: [SessionInfo] = []
        for (info, channels) in ended {
            if !(await record(info, ending: ending, actor: actor, reason: reason, detail: detail, connections: channels.count)) {
                unrecorded.append(info)
            }
        }
        if ending == .revoked { onRevoked?(ended.map(\.0), actor, reason) }
        return Ended(sessions: ended.map(\.0), unrecorded: unrecorded)
    }

    /// Applies a policy's verdict (`GrantReview`) to every live session: a grant no longer allowed
    /// is revoked at once (`by: policy`, `reason: policy`, the verdict as `detail`; its connections
    /// cut and alerted like any revocation), and one the policy now allows for less time gets the
    /// earlier expiry (a log line; its `grant.expired` is recorded when it comes). Returns how many
    /// were ended and shortened.
    @discardableResult
    public func review(_ verdict: (SessionInfo) -> GrantReview) async -> (ended: Int, shortened: Int) {
        let live = state.withLock { state in state.entries.values.filter { $0.ended == nil }.map(\.info) }
        var ending: [(SessionInfo, String)] = []
        var shortened = 0
        for info in live {
            switch verdict(info) {
            case .keep:
                break
            case .end(let why):
                ending.append((info, why))
            case .shorten(let expiresAt):
                let moved = state.withLock { state -> Bool in
                    guard var entry = state.entries[info.session], entry.ended == nil, expiresAt < entry.info.expiresAt else {
                        return false
                    }
                    entry.timer?.cancel()
                    entry.info.expiresAt = expiresAt
                    entry.timer = schedule(entry.info)
                    state.entries[info.session] = entry
                    return true
                }
                if moved {
                    shortened += 1
                    logger.notice(
                        "grant shortened by the policy's max_duration",
                        metadata: ["session": "\(info.session)", "expires_at": "\(AuditValue.time(expiresAt))"])
                }
            }
        }
        if shortened > 0 {
            // Admissions cached on connections carry the old expiry: they are checked again.
            state.withLock { $0.ends += 1 }
            saveSoon()
        }
        var ended = 0
        for (info, why) in ending {
            ended += await end([info.session], as: .revoked, by: "policy", reason: "policy", detail: why).count
        }
        return (ended, shortened)
    }

    /// Applies `policy` to every live session (`Policy.review`, through `review(_:)`): at a reload,
    /// with the policy the sessions were issued under as `previous`; at start, without one.
    public func review(under policy: Policy, previous: Policy?) async {
        let (ended, shortened) = await review { info in
            policy.review(
                user: info.user, pathway: info.pathway, tag: info.tag, issuedAt: info.issuedAt, expiresAt: info.expiresAt,
                previous: previous)
        }
        if ended + shortened > 0 {
            logger.warning(
                "live grants decided again under the policy in force", metadata: ["revoked": "\(ended)", "shortened": "\(shortened)"])
        }
    }

    // MARK: expiry

    /// Records `grant.expired` for the sessions of the file whose grants expired while the gateway
    /// was down (or before it could record them), then drops them from the file. Called at start;
    /// one that cannot be recorded stays in the file for the next start.
    public func recordExpiredWhileDown() async {
        let missed = state.withLock { $0.expiredWhileDown }
        guard !missed.isEmpty else { return }
        for info in missed.sorted(by: { $0.expiresAt < $1.expiresAt }) {
            let recorded = await record(
                info, ending: .expired, actor: nil, reason: "recorded at start: the gateway was down when the grant expired",
                connections: 0)
            if recorded { state.withLock { $0.expiredWhileDown.removeAll { $0.session == info.session } } }
        }
        await saveNow()
    }

    func schedule(_ info: SessionInfo) -> Scheduled<Void> {
        let remaining = max(0, info.expiresAt.timeIntervalSince(clock.now()))
        let loop = group.next()
        return loop.scheduleTask(in: .milliseconds(Int64(remaining * 1000) + 1)) { [self] in
            expire(info.session)
        }
    }

    private func expire(_ session: String) {
        let expiring: (info: SessionInfo, channels: [any Channel])? = state.withLock { state in
            guard var entry = state.entries[session] else { return nil }
            guard entry.ended == nil else {
                // Released or revoked earlier and kept until now so that its token stayed refused.
                state.entries.removeValue(forKey: session)
                return nil
            }
            // Kept (as live, in the file) until its expiry is on the record.
            if entry.info.tag != .probe { state.ends += 1 }
            entry.ended = .expired
            entry.timer = nil
            let channels = Array(entry.channels.values)
            entry.channels = [:]
            state.entries[session] = entry
            return (entry.info, channels)
        }
        guard let expiring else {
            saveSoon()
            return
        }
        for channel in expiring.channels { channel.close(promise: nil) }
        logger.notice("grant expired", metadata: ["session": "\(session)", "connections_cut": "\(expiring.channels.count)"])
        Task {
            // Not recorded (the audit log is failing): it stays in the file, and the next start records it.
            guard await record(expiring.info, ending: .expired, actor: nil, reason: nil, connections: expiring.channels.count) else {
                return
            }
            state.withLock { state in
                if state.entries[session]?.ended == .expired { state.entries.removeValue(forKey: session) }
            }
            // A crash before this rewrite records the expiry once more at the next start.
            if expiring.info.tag != .probe { saveSoon() }
        }
    }

    /// Audits the end of a session; false when it could not be recorded.
    @discardableResult
    private func record(
        _ info: SessionInfo, ending: Ending, actor: String?, reason: String?, detail: String? = nil, connections: Int
    ) async -> Bool {
        var fields: [String: AuditValue] = [
            "session": .string(info.session),
            "user": .string(info.user),
            "pathway": .string(info.pathway),
            "expires_at": .time(info.expiresAt),
            "connections_closed": .integer(Int64(connections)),
        ]
        fields["by"] = actor.map(AuditValue.string)
        fields["reason"] = reason.map(AuditValue.string)
        fields["detail"] = detail.map(AuditValue.string)
        do {
            try await audit.record(AuditEvent(kind: ending.eventKind, time: clock.now(), fields: fields))
            return true
        } catch {
            logger.critical("audit failed for the end of a grant", metadata: ["session": "\(info.session)", "error": "\(error)"])
            return false
        }
    }
}
