import BreakGlassAuditFormat
import BreakGlassCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Rebuilding the sessions at start from the audit log, the source of truth.
extension SessionRegistry {
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
    /// The file scan runs on NIO's thread pool (`NIOThreadPool.singleton`), off the event loops
    /// and the task pool. Call it at start, before the listener serves.
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
}
