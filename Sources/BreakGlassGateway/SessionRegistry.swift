import BreakGlassAuditFormat
import BreakGlassCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Every grant this gateway issued and the connections that carry its traffic. A signed token is
/// admitted only for a session issued here, to the same user, for the same pathway. A grant ends at
/// its expiry, when its holder releases it, or when an operator revokes it; its connections are
/// closed then, and the end is audited once. At start the sessions are rebuilt from the audit log
/// (`restore`), the source of truth; a durable file keeps them too, as a cache: released and revoked
/// ones so that a restart does not bring them back, live ones so that their expiry is audited even
/// when the gateway was not running at that moment.
public final class SessionRegistry: Sendable {
    /// How a session ended.
    public enum Ending: String, Sendable, Codable {
        case released, revoked, expired

        var eventKind: AuditEvent.Kind {
            switch self {
            case .released: .grantReleased
            case .revoked: .grantRevoked
            case .expired: .grantExpired
            }
        }
    }

    /// What the registry knows of one grant.
    public typealias SessionInfo = BreakGlassCore.SessionInfo

    private struct Entry {
        var info: SessionInfo
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// `.expired` only while its `grant.expired` is being recorded (then the entry goes).
        var ended: Ending?
        var timer: Scheduled<Void>?
    }

    /// Everything the registry knows, under one lock.
    private struct State {
        var entries: [String: Entry] = [:]
        /// Counts the ends of sessions (and refusals of old grants), bumped with the change, so that
        /// a connection admitted while it had a number may be admitted again without a lookup as
        /// long as the number stands (see `generation`). Probe sessions, whose requests are always
        /// checked in full, do not count: their rounds end them every few seconds.
        var ends = 0
        /// Live sessions of the file whose expiry passed while the gateway was not running; their
        /// `grant.expired` is recorded by `recordExpiredWhileDown()`.
        var expiredWhileDown: [SessionInfo] = []
        /// Grants issued before this are refused: set when the sessions file cannot be read, so that
        /// a released or revoked token cannot come back (fail closed; users log in again), until the
        /// audit log, which records every end, rebuilds the sessions; and when the log cannot be read.
        var issuedNotBefore: Date?
        /// The sessions file could not be read at start (see `issuedNotBefore`).
        var fileUnreadable = false
        /// Rewrites of the sessions file.
        var rewrites = SessionRewrites<CheckedContinuation<Void, Never>>()
        var onRevoked: (@Sendable ([SessionInfo], String, String?) -> Void)?

        /// Fails every grant issued before `now` (the file or the log could not be read).
        mutating func refuseEarlierGrants(now: Date) {
            ends += 1
            issuedNotBefore = issuedNotBefore ?? now
        }

        /// Why a token describing `claimed` may not act for its session now; nil when the gateway
        /// issued that session to the same user for the same pathway and it is live.
        func refusal(_ claimed: SessionInfo, now: Date) -> BreakGlassError? {
            guard now < claimed.expiresAt else {
                return BreakGlassError(.invalidToken, "the grant expired at \(AuditValue.time(claimed.expiresAt))")
            }
            if let issuedNotBefore, claimed.issuedAt < issuedNotBefore { return SessionRegistry.restartRefusal }
            guard let entry = entries[claimed.session] else {
                return BreakGlassError(.invalidToken, "this grant was not issued by this gateway (no record of its session); log in again")
            }
            if let issuedNotBefore, entry.info.issuedAt < issuedNotBefore { return SessionRegistry.restartRefusal }
            guard entry.info.user == claimed.user, entry.info.pathway == claimed.pathway, entry.info.tag == claimed.tag else {
                return BreakGlassError(.invalidToken, "this token does not match the grant issued for its session; log in again")
            }
            if let ended = entry.ended {
                return BreakGlassError(.invalidToken, "the grant was \(ended.rawValue); log in again for new access")
            }
            // The recorded expiry holds even if a token claims a later one.
            guard now < entry.info.expiresAt else {
                return BreakGlassError(.invalidToken, "the grant expired at \(AuditValue.time(entry.info.expiresAt))")
            }
            return nil
        }

        /// What the sessions file holds now: live sessions, those expired whose record is still to be
        /// made (the next start records them), and released or revoked ones until their tokens expire.
        /// Probe sessions are not kept: their grants last a minute and allow only the probe.
        func fileRecords(now: Date) -> [SessionFile.Record] {
            let kept = entries.values.compactMap { entry -> SessionFile.Record? in
                guard entry.info.tag != .probe else { return nil }
                let info = entry.info
                switch entry.ended {
                case nil, .expired:
                    return SessionFile.Record(
                        session: info.session, user: info.user, pathway: info.pathway, issuedAt: info.issuedAt, expiresAt: info.expiresAt)
                case .released, .revoked:
                    guard info.expiresAt > now else { return nil }
                    return SessionFile.Record(
                        session: info.session, user: info.user, pathway: info.pathway, issuedAt: info.issuedAt, expiresAt: info.expiresAt,
                        ending: entry.ended)
                }
            }
            return kept
                + expiredWhileDown.map {
                    SessionFile.Record(
                        session: $0.session, user: $0.user, pathway: $0.pathway, issuedAt: $0.issuedAt, expiresAt: $0.expiresAt)
                }
        }
    }

    private let state = Mutex(State())
    private let audit: any AuditSink
    private let clock: any WallClock
    private let group: any EventLoopGroup
    private let endedFile: String?
    private let logger: Logger

    /// Told of every revocation (the sessions, who revoked them, and why), after it is audited.
    public var onRevoked: (@Sendable ([SessionInfo], String, String?) -> Void)? {
        get { state.withLock { $0.onRevoked } }
        set { state.withLock { $0.onRevoked = newValue } }
    }

    /// `endedFile` keeps sessions across restarts (nil: kept in memory only).
    public init(audit: any AuditSink, clock: any WallClock, group: any EventLoopGroup, endedFile: String?, logger: Logger) {
        self.audit = audit
        self.clock = clock
        self.group = group
        self.endedFile = endedFile
        self.logger = logger
        loadSessions()
    }

    /// Starts tracking a grant at its issuance, once its `grant.issued` is recorded: its tokens are
    /// admitted from then on, its expiry timer is set, and it is kept in the file until it expires.
    /// Nothing else adds sessions (but `restore`, from the audit log).
    public func track(_ info: SessionInfo) {
        let added = state.withLock { state in
            guard state.entries[info.session] == nil else { return false }
            state.entries[info.session] = Entry(info: info, timer: schedule(info))
            return true
        }
        // Probe sessions are not kept across restarts: their grants last a minute and allow only the probe.
        if added, info.tag != .probe { saveSoon() }
    }

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

    /// Changes whenever a session other than a probe's ends: an admission made while it had this
    /// number (read before `admit`) holds, for an unexpired grant, as long as it stays.
    public var generation: Int { state.withLock { $0.ends } }

    /// Admits a request of `session` on `channel`: refused when the gateway did not issue the session
    /// to this user for this pathway, or when it has ended or expired. The channel is closed when the
    /// session ends.
    public func admit(_ info: SessionInfo, channel: any Channel) -> BreakGlassError? {
        let now = clock.now()
        let id = ObjectIdentifier(channel)
        let outcome: (refusal: BreakGlassError?, added: Bool) = state.withLock { state in
            if let refusal = state.refusal(info, now: now) { return (refusal, false) }
            guard state.entries[info.session]?.channels[id] == nil else { return (nil, false) }
            state.entries[info.session]?.channels[id] = channel
            return (nil, true)
        }
        // A keep-alive connection is admitted once per request but registered once.
        if outcome.added {
            channel.closeFuture.whenComplete { _ in
                _ = self.state.withLock { $0.entries[info.session]?.channels.removeValue(forKey: id) }
            }
        }
        return outcome.refusal
    }

    /// Why a token describing `claimed` may not act for its session now (as `admit` refuses it),
    /// or nil when the gateway issued that session to the same user for the same pathway and it is
    /// live. For uses that do not open a connection, such as a release.
    public func check(_ claimed: SessionInfo) -> BreakGlassError? {
        let now = clock.now()
        return state.withLock { $0.refusal(claimed, now: now) }
    }

    private static let restartRefusal = BreakGlassError(
        .invalidToken, "grants from before the gateway's restart are no longer accepted; log in again")

    /// What the registry says of the session a token describes.
    public enum Standing: Sendable {
        /// Issued here to that user for that pathway, and live.
        case live
        /// Issued here to that user for that pathway, and ended.
        case ended(Ending)
        /// Not a session this token may speak for (not issued here, another user or pathway, or
        /// from before a restart that could not rebuild it).
        case refused(BreakGlassError)
    }

    /// The standing of the session `claimed` describes, for `GET /v1/grants/current`.
    public func standing(_ claimed: SessionInfo) -> Standing {
        let now = clock.now()
        return state.withLock { state in
            if let entry = state.entries[claimed.session], entry.info.user == claimed.user, entry.info.pathway == claimed.pathway,
                entry.info.tag == claimed.tag
            {
                if let ended = entry.ended { return .ended(ended) }
                if now >= entry.info.expiresAt { return .ended(.expired) }
            }
            if let refusal = state.refusal(claimed, now: now) { return .refused(refusal) }
            return .live
        }
    }

    /// Whether the session is live (tracked, not ended, not expired).
    public func isLive(_ session: String) -> Bool {
        let now = clock.now()
        return state.withLock { state in
            guard let entry = state.entries[session] else { return false }
            return entry.ended == nil && now < entry.info.expiresAt
        }
    }

    /// How the session ended ("released", "revoked", "expired"); nil while it is live.
    public func endingDescription(_ session: String) -> String? {
        let now = clock.now()
        return state.withLock { state in
            guard let entry = state.entries[session] else { return Ending.expired.rawValue }
            if let ended = entry.ended { return ended.rawValue }
            return now < entry.info.expiresAt ? nil : Ending.expired.rawValue
        }
    }

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

    /// Live sessions with their connection counts, soonest expiry first.
    public func liveSessionsWithConnections() -> [(info: SessionInfo, connections: Int)] {
        let now = clock.now()
        return state.withLock { state in
            state.entries.values.filter { $0.ended == nil && now < $0.info.expiresAt }.map { ($0.info, $0.channels.count) }
        }.sorted { $0.info.expiresAt < $1.info.expiresAt }
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

    /// Live connections of a session (for tests and health).
    public func connectionCount(_ session: String) -> Int {
        state.withLock { $0.entries[session]?.channels.count ?? 0 }
    }

    // MARK: rebuilding from the audit log

    /// Slack added to the window of records read at start, for clock skew and record order.
    static let restoreMargin: TimeInterval = 600

    /// How far back grants can still matter: the longest a grant may last under `policy` (any
    /// pathway's `max_duration`, the probes' grant duration), plus a margin. Grants issued earlier
    /// under a longer limit of an older policy are not rebuilt (refused: their holders log in again).
    public static func restoreWindow(_ policy: Policy) -> TimeInterval {
        let longest = (policy.pathways.values.map(\.maxDuration) + [policy.probes?.grantDuration ?? .seconds(60)]).max() ?? .zero
        return Double(longest.components.seconds) + Double(longest.components.attoseconds) * 1e-18 + restoreMargin
    }

    /// Reads the grants issued before this start, and their ends, from the audit log in
    /// `directory` and rebuilds the sessions from them (see `restore(from:)`); returns once done.
    /// The file scan runs on the registry's file queue, off the event loops and the task pool. Call
    /// it at start, before the listener serves.
    public func restore(fromAuditLog directory: String, policy: Policy) async {
        let now = clock.now()
        // The sessions of the file are looked up in the log whatever their age.
        let oldestKept =
            state.withLock { state in (state.entries.values.map(\.info.issuedAt) + state.expiredWhileDown.map(\.issuedAt)).min() } ?? now
        let since = min(now.addingTimeInterval(-Self.restoreWindow(policy)), oldestKept.addingTimeInterval(-Self.restoreMargin))
        let recorded: Result<[RecordedSession], AuditLogError>
        do {
            recorded = try await NIOThreadPool.singleton.runIfActive { () -> Result<[RecordedSession], AuditLogError> in
                do throws(AuditLogError) {
                    return .success(try AuditSessions.issued(directory: directory, since: since))
                } catch {
                    return .failure(error)
                }
            }
        } catch {
            recorded = .failure(AuditLogError(.io, "the thread pool that reads the log is not running: \(error)"))
        }
        await restore(from: recorded)
    }

    /// Rebuilds the sessions issued before this start from the audit log's records: the log wins
    /// over the file. A session the log did not issue is dropped; user, pathway, tag and expiry are
    /// the log's; an end recorded in either one ends the session; one the log shows live whose
    /// expiry passed gets its `grant.expired` from `recordExpiredWhileDown()`. When the log could not
    /// be read, every grant from before this start is refused (fail closed; users log in again).
    public func restore(from recorded: Result<[RecordedSession], AuditLogError>) async {
        let now = clock.now()
        let sessions: [RecordedSession]
        switch recorded {
        case .failure(let error):
            state.withLock { $0.refuseEarlierGrants(now: now) }
            logger.critical(
                "cannot read the grants issued from the audit log: every grant from before this start is refused (log in again)",
                metadata: ["error": "\(error)"])
            return
        case .success(let list):
            sessions = list
        }
        var missed: [SessionInfo] = []
        var dropped = 0
        var restored = 0
        let fileWasUnreadable = state.withLock { state in
            var issued = Set<String>()
            for record in sessions where issued.insert(record.session).inserted {
                let info = SessionInfo(
                    session: record.session, user: record.user, pathway: record.pathway, issuedAt: record.issuedAt,
                    expiresAt: record.expiresAt, tag: record.tag.flatMap(Grant.Tag.init(rawValue:)))
                let kept = state.entries.removeValue(forKey: record.session)
                kept?.timer?.cancel()
                let logged = record.ending.flatMap(Ending.init(rawValue:))
                // Its expiry is on the record: nothing is left to do for it.
                if logged == .expired { continue }
                let ending = logged ?? kept?.ended
                guard now < info.expiresAt else {
                    if ending == nil { missed.append(info) }
                    continue
                }
                state.entries[record.session] = Entry(info: info, ended: ending, timer: schedule(info))
                restored += 1
            }
            // The file cannot add a session that the log never issued.
            for (session, entry) in state.entries where !issued.contains(session) {
                entry.timer?.cancel()
                state.entries.removeValue(forKey: session)
                dropped += 1
            }
            state.expiredWhileDown = missed
            guard state.fileUnreadable else { return false }
            // The log holds every issue and every recorded end: the sessions it rebuilt replace the
            // unreadable cache, and the grants it shows live are accepted again.
            state.fileUnreadable = false
            state.issuedNotBefore = nil
            state.ends += 1
            return true
        }
        if fileWasUnreadable {
            logger.warning("the sessions file was unreadable; the audit log rebuilt the sessions instead")
        }
        if dropped > 0 {
            logger.critical(
                "the sessions file names sessions that the audit log never issued: they are refused",
                metadata: ["count": "\(dropped)"])
        }
        logger.notice(
            "sessions rebuilt from the audit log",
            metadata: ["recorded": "\(sessions.count)", "kept": "\(restored)", "expired_while_down": "\(missed.count)"])
        await saveNow()
    }

    // MARK: expiry

    private func schedule(_ info: SessionInfo) -> Scheduled<Void> {
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

    // MARK: the durable file of sessions

    /// Returns once the file holds the sessions as they are now (at shutdown: no rewrite left queued).
    public func flush() async {
        await saveNow()
    }

    /// Asks for a rewrite of the file (shared with any rewrite already asked for) and returns at once.
    private func saveSoon() {
        guard endedFile != nil else { return }
        if state.withLock({ $0.rewrites.request() }) { startWriter() }
    }

    /// Asks for a rewrite of the file and returns once one that began after this call is durable.
    private func saveNow() async {
        guard endedFile != nil else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            if state.withLock({ $0.rewrites.request(waiter: done) }) { startWriter() }
        }
    }

    /// Runs the writer on the thread pool, off the event loops and the task pool: it rewrites the
    /// file until no request is left (`SessionRewrites` lets one writer run at a time).
    private func startWriter() {
        NIOThreadPool.singleton.submit { [self] _ in
            // The shared pool never stops; were it stopping, the write is still made here.
            var again = true
            while again {
                let now = clock.now()
                let (version, records) = state.withLock { ($0.rewrites.begin(), $0.fileRecords(now: now)) }
                writeSessions(records)
                let next = state.withLock { $0.rewrites.finished(version) }
                for waiter in next.done { waiter.resume() }
                again = next.again
            }
        }
    }

    /// Replaces the file with `records` (on the writer only). A failure is logged: the file is a
    /// cache of the audit log, which rebuilds the sessions at start.
    private func writeSessions(_ records: [SessionFile.Record]) {
        guard let endedFile else { return }
        do {
            try SessionFile.write(records, to: endedFile)
        } catch {
            logger.critical("cannot save the sessions file", metadata: ["file": "\(endedFile)", "error": "\(error)"])
        }
    }

    private func loadSessions() {
        guard let endedFile, FileManager.default.fileExists(atPath: endedFile) else { return }
        let now = clock.now()
        do {
            let records = try SessionFile.read(endedFile)
            let missed: [SessionInfo] = state.withLock { state in
                var missed: [SessionInfo] = []
                for record in records {
                    let info = SessionInfo(
                        session: record.session, user: record.user, pathway: record.pathway, issuedAt: record.issuedAt,
                        expiresAt: record.expiresAt)
                    if record.expiresAt > now {
                        state.entries[record.session] = Entry(info: info, ended: record.ending, timer: schedule(info))
                    } else if record.ending == nil {
                        missed.append(info)
                    }
                }
                state.expiredWhileDown = missed
                return missed
            }
            logger.notice(
                "sessions restored",
                metadata: ["file": "\(endedFile)", "count": "\(records.count)", "expired_while_down": "\(missed.count)"])
        } catch {
            state.withLock { state in
                state.refuseEarlierGrants(now: now)
                state.fileUnreadable = true
            }
            logger.critical(
                "cannot read the sessions file: every grant from before this start is refused (log in again) unless the audit log rebuilds them",
                metadata: ["file": "\(endedFile)", "error": "\(error)"])
        }
    }
}
