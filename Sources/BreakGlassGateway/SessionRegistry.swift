import BreakGlassAuditFormat
import BreakGlassAuditLog
import BreakGlassCore
import Foundation
import Logging
import NIOCore
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
    public struct SessionInfo: Sendable, Equatable {
        /// The grant's session ID.
        public var session: String
        /// The user the grant was issued to.
        public var user: String
        /// The pathway the grant opens.
        public var pathway: String
        /// When the grant was issued.
        public var issuedAt: Date
        /// When the grant expires (earlier than its token says if a policy reload shortened it).
        public var expiresAt: Date
        /// `probe` sessions can do nothing but their pathway's probe.
        public var tag: Grant.Tag?

        /// The session a grant describes.
        public init(grant: Grant) {
            self.init(
                session: grant.session, user: grant.user, pathway: grant.pathway, issuedAt: grant.issuedAt, expiresAt: grant.expiresAt,
                tag: grant.tag)
        }

        /// A session with the given fields.
        public init(session: String, user: String, pathway: String, issuedAt: Date, expiresAt: Date, tag: Grant.Tag? = nil) {
            self.tag = tag
            self.session = session
            self.user = user
            self.pathway = pathway
            self.issuedAt = issuedAt
            self.expiresAt = expiresAt
        }
    }

    private struct Entry {
        var info: SessionInfo
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// `.expired` only while its `grant.expired` is being recorded (then the entry goes).
        var ended: Ending?
        var timer: Scheduled<Void>?
    }

    /// One entry of the durable file of sessions.
    private struct SessionRecord: Codable {
        var session: String
        var user: String
        var pathway: String
        var issuedAt: Date
        var expiresAt: Date
        /// Nil while the session is live.
        var ending: Ending?

        enum CodingKeys: String, CodingKey {
            case session, user, pathway, ending
            case issuedAt = "issued_at"
            case expiresAt = "expires_at"
        }
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Counts the ends of sessions (and refusals of old grants); bumped under the `entries` lock
    /// before the change, so that a connection admitted while it had a number may be admitted again
    /// without a lookup as long as the number stands (see `generation`). Probe sessions, whose
    /// requests are always checked in full, do not count: their rounds end them every few seconds.
    private let ends = Atomic<Int>(0)
    /// Live sessions of the file whose expiry passed while the gateway was not running; their
    /// `grant.expired` is recorded by `recordExpiredWhileDown()`.
    private let expiredWhileDown = Mutex<[SessionInfo]>([])
    /// Grants issued before this are refused: set when the sessions file cannot be read,
    /// so that a released or revoked token cannot come back (fail closed; users log in again),
    /// until the audit log, which records every end, rebuilds the sessions; and when the log cannot
    /// be read.
    private let issuedNotBefore = Mutex<Date?>(nil)
    /// The sessions file could not be read at start (see `issuedNotBefore`).
    private let fileUnreadable = Atomic<Bool>(false)
    private let audit: any AuditSink
    private let clock: any WallClock
    private let group: any EventLoopGroup
    private let endedFile: String?
    private let logger: Logger
    /// Rewrites of the file run here, one at a time, off the event loops and the task pool.
    private let fileQueue = DispatchQueue(label: "breakglass.sessions-file")
    /// A rewrite is queued and has not started: later requests share it.
    private let rewriteQueued = Mutex(false)
    private let revokedHook = Mutex<(@Sendable ([SessionInfo], String, String?) -> Void)?>(nil)

    /// Told of every revocation (the sessions, who revoked them, and why), after it is audited.
    public var onRevoked: (@Sendable ([SessionInfo], String, String?) -> Void)? {
        get { revokedHook.withLock { $0 } }
        set { revokedHook.withLock { $0 = newValue } }
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
        let added = entries.withLock { entries in
            guard entries[info.session] == nil else { return false }
            entries[info.session] = Entry(info: info, timer: schedule(info))
            return true
        }
        // Probe sessions are not kept across restarts: their grants last a minute and allow only the probe.
        if added, info.tag != .probe { saveSoon() }
    }

    /// Records `grant.expired` for the sessions of the file whose grants expired while the gateway
    /// was down (or before it could record them), then drops them from the file. Called at start;
    /// one that cannot be recorded stays in the file for the next start.
    public func recordExpiredWhileDown() async {
        let missed = expiredWhileDown.withLock { $0 }
        guard !missed.isEmpty else { return }
        for info in missed.sorted(by: { $0.expiresAt < $1.expiresAt }) {
            let recorded = await record(
                info, ending: .expired, actor: nil, reason: "recorded at start: the gateway was down when the grant expired",
                connections: 0)
            if recorded { expiredWhileDown.withLock { $0.removeAll { $0.session == info.session } } }
        }
        await saveNow()
    }

    /// Changes whenever a session other than a probe's ends: an admission made while it had this
    /// number (read before `admit`) holds, for an unexpired grant, as long as it stays.
    public var generation: Int { ends.load(ordering: .acquiring) }

    /// Admits a request of `session` on `channel`: refused when the gateway did not issue the session
    /// to this user for this pathway, or when it has ended or expired. The channel is closed when the
    /// session ends.
    public func admit(_ info: SessionInfo, channel: any Channel) -> BreakGlassError? {
        let now = clock.now()
        let notBefore = issuedNotBefore.withLock { $0 }
        if let refusal = Self.refusal(claimed: info, now: now, notBefore: notBefore) { return refusal }
        let id = ObjectIdentifier(channel)
        let outcome: (refusal: BreakGlassError?, added: Bool) = entries.withLock { entries in
            let entry = entries[info.session]
            if let refusal = Self.refusal(claimed: info, entry: entry, now: now, notBefore: notBefore) { return (refusal, false) }
            guard entry?.channels[id] == nil else { return (nil, false) }
            entries[info.session]?.channels[id] = channel
            return (nil, true)
        }
        // A keep-alive connection is admitted once per request but registered once.
        if outcome.added {
            channel.closeFuture.whenComplete { _ in
                _ = self.entries.withLock { $0[info.session]?.channels.removeValue(forKey: id) }
            }
        }
        return outcome.refusal
    }

    /// Why a token describing `claimed` may not act for its session now (as `admit` refuses it),
    /// or nil when the gateway issued that session to the same user for the same pathway and it is
    /// live. For uses that do not open a connection, such as a release.
    public func check(_ claimed: SessionInfo) -> BreakGlassError? {
        let now = clock.now()
        let notBefore = issuedNotBefore.withLock { $0 }
        if let refusal = Self.refusal(claimed: claimed, now: now, notBefore: notBefore) { return refusal }
        return entries.withLock { Self.refusal(claimed: claimed, entry: $0[claimed.session], now: now, notBefore: notBefore) }
    }

    /// The checks on the token's own claims.
    private static func refusal(claimed: SessionInfo, now: Date, notBefore: Date?) -> BreakGlassError? {
        guard now < claimed.expiresAt else {
            return BreakGlassError(.invalidToken, "the grant expired at \(AuditValue.time(claimed.expiresAt))")
        }
        if let notBefore, claimed.issuedAt < notBefore { return restartRefusal }
        return nil
    }

    /// The checks against what the gateway recorded when it issued the session.
    private static func refusal(claimed: SessionInfo, entry: Entry?, now: Date, notBefore: Date?) -> BreakGlassError? {
        guard let entry else {
            return BreakGlassError(.invalidToken, "this grant was not issued by this gateway (no record of its session); log in again")
        }
        if let notBefore, entry.info.issuedAt < notBefore { return restartRefusal }
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

    private static let restartRefusal = BreakGlassError(
        .invalidToken, "grants from before the gateway's restart are no longer accepted; log in again")

    /// Whether the session is live (tracked, not ended, not expired).
    public func isLive(_ session: String) -> Bool {
        let now = clock.now()
        return entries.withLock { entries in
            guard let entry = entries[session] else { return false }
            return entry.ended == nil && now < entry.info.expiresAt
        }
    }

    /// How the session ended ("released", "revoked", "expired"); nil while it is live.
    public func endingDescription(_ session: String) -> String? {
        let now = clock.now()
        return entries.withLock { entries in
            guard let entry = entries[session] else { return Ending.expired.rawValue }
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
        entries.withLock { entries in
            for session in sessions {
                guard var entry = entries[session], entry.ended == nil else { continue }
                if entry.info.tag != .probe { ends.add(1, ordering: .releasing) }
                entry.ended = ending
                entry.timer?.cancel()
                ended.append((entry.info, Array(entry.channels.values)))
                entry.channels = [:]
                entries[session] = entry
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
        return entries.withLock { entries in
            entries.values.filter { $0.ended == nil && now < $0.info.expiresAt }.map { ($0.info, $0.channels.count) }
        }.sorted { $0.info.expiresAt < $1.info.expiresAt }
    }

    /// Applies a policy's verdict (`GrantReview`) to every live session: a grant no longer allowed
    /// is revoked at once (`by: policy`, `reason: policy`, the verdict as `detail`; its connections
    /// cut and alerted like any revocation), and one the policy now allows for less time gets the
    /// earlier expiry (a log line; its `grant.expired` is recorded when it comes). Returns how many
    /// were ended and shortened.
    @discardableResult
    public func review(_ verdict: (SessionInfo) -> GrantReview) async -> (ended: Int, shortened: Int) {
        let live = entries.withLock { entries in entries.values.filter { $0.ended == nil }.map(\.info) }
        var ending: [(SessionInfo, String)] = []
        var shortened = 0
        for info in live {
            switch verdict(info) {
            case .keep:
                break
            case .end(let why):
                ending.append((info, why))
            case .shorten(let expiresAt):
                let moved = entries.withLock { entries -> Bool in
                    guard var entry = entries[info.session], entry.ended == nil, expiresAt < entry.info.expiresAt else { return false }
                    entry.timer?.cancel()
                    entry.info.expiresAt = expiresAt
                    entry.timer = schedule(entry.info)
                    entries[info.session] = entry
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
            ends.add(1, ordering: .releasing)
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
        entries.withLock { $0[session]?.channels.count ?? 0 }
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
            (entries.withLock { $0.values.map(\.info.issuedAt) } + expiredWhileDown.withLock { $0.map(\.issuedAt) }).min() ?? now
        let since = min(now.addingTimeInterval(-Self.restoreWindow(policy)), oldestKept.addingTimeInterval(-Self.restoreMargin))
        let recorded = await withCheckedContinuation { (done: CheckedContinuation<Result<[RecordedSession], AuditLogError>, Never>) in
            fileQueue.async {
                do throws(AuditLogError) {
                    done.resume(returning: .success(try AuditSessions.issued(directory: directory, since: since)))
                } catch {
                    done.resume(returning: .failure(error))
                }
            }
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
            ends.add(1, ordering: .releasing)
            issuedNotBefore.withLock { $0 = $0 ?? now }
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
        entries.withLock { entries in
            var issued = Set<String>()
            for record in sessions where issued.insert(record.session).inserted {
                let info = SessionInfo(
                    session: record.session, user: record.user, pathway: record.pathway, issuedAt: record.issuedAt,
                    expiresAt: record.expiresAt, tag: record.tag.flatMap(Grant.Tag.init(rawValue:)))
                let kept = entries.removeValue(forKey: record.session)
                kept?.timer?.cancel()
                let logged = record.ending.flatMap(Ending.init(rawValue:))
                // Its expiry is on the record: nothing is left to do for it.
                if logged == .expired { continue }
                let ending = logged ?? kept?.ended
                guard now < info.expiresAt else {
                    if ending == nil { missed.append(info) }
                    continue
                }
                entries[record.session] = Entry(info: info, ended: ending, timer: schedule(info))
                restored += 1
            }
            // The file cannot add a session that the log never issued.
            for (session, entry) in entries where !issued.contains(session) {
                entry.timer?.cancel()
                entries.removeValue(forKey: session)
                dropped += 1
            }
        }
        expiredWhileDown.withLock { $0 = missed }
        if fileUnreadable.exchange(false, ordering: .acquiring) {
            // The log holds every issue and every recorded end: the sessions it rebuilt replace the
            // unreadable cache, and the grants it shows live are accepted again.
            issuedNotBefore.withLock { $0 = nil }
            ends.add(1, ordering: .releasing)
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
        let expiring: (info: SessionInfo, channels: [any Channel])? = entries.withLock { entries in
            guard var entry = entries[session] else { return nil }
            guard entry.ended == nil else {
                // Released or revoked earlier and kept until now so that its token stayed refused.
                entries.removeValue(forKey: session)
                return nil
            }
            // Kept (as live, in the file) until its expiry is on the record.
            if entry.info.tag != .probe { ends.add(1, ordering: .releasing) }
            entry.ended = .expired
            entry.timer = nil
            let channels = Array(entry.channels.values)
            entry.channels = [:]
            entries[session] = entry
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
            entries.withLock { entries in
                if entries[session]?.ended == .expired { entries.removeValue(forKey: session) }
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

    private static let fractionalTime = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// Returns once the file holds the sessions as they are now (at shutdown: no rewrite left queued).
    public func flush() async {
        await saveNow()
    }

    /// Queues a rewrite of the file (shared with any rewrite already queued) and returns at once.
    private func saveSoon() {
        guard endedFile != nil else { return }
        let queue = rewriteQueued.withLock { queued in
            defer { queued = true }
            return !queued
        }
        guard queue else { return }
        fileQueue.async {
            self.rewriteQueued.withLock { $0 = false }
            self.saveSessions()
        }
    }

    /// Rewrites the file and returns once it is durable.
    private func saveNow() async {
        guard endedFile != nil else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            fileQueue.async {
                self.saveSessions()
                done.resume()
            }
        }
    }

    /// Writes the file from the sessions known now (on `fileQueue` only).
    private func saveSessions() {
        guard let endedFile else { return }
        let now = clock.now()
        let records = entries.withLock { entries in
            entries.values.compactMap { entry -> SessionRecord? in
                guard entry.info.tag != .probe else { return nil }
                switch entry.ended {
                case nil, .expired:
                    // Live, or expired with its record still to be made: the next start records an
                    // expiry that this run did not.
                    return SessionRecord(
                        session: entry.info.session, user: entry.info.user, pathway: entry.info.pathway, issuedAt: entry.info.issuedAt,
                        expiresAt: entry.info.expiresAt)
                case .released, .revoked:
                    guard entry.info.expiresAt > now else { return nil }
                    return SessionRecord(
                        session: entry.info.session, user: entry.info.user, pathway: entry.info.pathway, issuedAt: entry.info.issuedAt,
                        expiresAt: entry.info.expiresAt, ending: entry.ended)
                }
            }
        }
        // Sessions whose expiry is still to be recorded stay in the file until it is.
        let missed = expiredWhileDown.withLock { $0 }.map {
            SessionRecord(session: $0.session, user: $0.user, pathway: $0.pathway, issuedAt: $0.issuedAt, expiresAt: $0.expiresAt)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        // Fractions of a second kept: a restored session expires when its token does, not earlier.
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.fractionalTime))
        }
        do {
            let data = try encoder.encode((records + missed).sorted { $0.session < $1.session })
            try DurableFile.replace(endedFile, with: Array(data))
        } catch {
            logger.critical("cannot save the sessions file", metadata: ["file": "\(endedFile)", "error": "\(error)"])
        }
    }

    private func loadSessions() {
        guard let endedFile, FileManager.default.fileExists(atPath: endedFile) else { return }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            // Files written before fractions were kept have whole seconds.
            guard let date = (try? Self.fractionalTime.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text)) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        do {
            let records = try decoder.decode([SessionRecord].self, from: Data(DurableFile.read(endedFile)))
            let now = clock.now()
            var missed: [SessionInfo] = []
            entries.withLock { entries in
                for record in records {
                    let info = SessionInfo(
                        session: record.session, user: record.user, pathway: record.pathway, issuedAt: record.issuedAt,
                        expiresAt: record.expiresAt)
                    if record.expiresAt > now {
                        entries[record.session] = Entry(info: info, ended: record.ending, timer: schedule(info))
                    } else if record.ending == nil {
                        missed.append(info)
                    }
                }
            }
            expiredWhileDown.withLock { $0 = missed }
            logger.notice(
                "sessions restored",
                metadata: ["file": "\(endedFile)", "count": "\(records.count)", "expired_while_down": "\(missed.count)"])
        } catch {
            ends.add(1, ordering: .releasing)
            issuedNotBefore.withLock { $0 = clock.now() }
            fileUnreadable.store(true, ordering: .releasing)
            logger.critical(
                "cannot read the sessions file: every grant from before this start is refused (log in again) unless the audit log rebuilds them",
                metadata: ["file": "\(endedFile)", "error": "\(error)"])
        }
    }
}
