import BreakGlassAuditFormat
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
///
/// Its parts: admission here; ends of sessions (release, revocation, review, expiry) in
/// `SessionRegistry+Ending`; rebuilding from the audit log in `+Restore`; the durable file in
/// `+Persistence`.
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

    /// One session and its connections. (This, `State` and the stored properties are internal, not
    /// private, for the registry's extensions in the files next to this one.)
    struct Entry {
        var info: SessionInfo
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// `.expired` only while its `grant.expired` is being recorded (then the entry goes).
        var ended: Ending?
        var timer: Scheduled<Void>?
    }

    /// Everything the registry knows, under one lock.
    struct State {
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

    let state = Mutex(State())
    let audit: any AuditSink
    let clock: any WallClock
    let group: any EventLoopGroup
    let endedFile: String?
    let logger: Logger

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

    /// Live sessions with their connection counts, soonest expiry first.
    public func liveSessionsWithConnections() -> [(info: SessionInfo, connections: Int)] {
        let now = clock.now()
        return state.withLock { state in
            state.entries.values.filter { $0.ended == nil && now < $0.info.expiresAt }.map { ($0.info, $0.channels.count) }
        }.sorted { $0.info.expiresAt < $1.info.expiresAt }
    }

    /// Live connections of a session (for tests and health).
    public func connectionCount(_ session: String) -> Int {
        state.withLock { $0.entries[session]?.channels.count ?? 0 }
    }
}
