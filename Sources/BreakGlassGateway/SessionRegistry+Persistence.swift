import BreakGlassCore
import Foundation
import Logging
import NIOPosix
import Synchronization

/// The durable file of sessions, a cache of the audit log: rewritten off the event loops, read at start.
extension SessionRegistry {
    /// Returns once the file holds the sessions as they are now (at shutdown: no rewrite left queued).
    public func flush() async {
        await saveNow()
    }

    /// Asks for a rewrite of the file (shared with any rewrite already asked for) and returns at once.
    func saveSoon() {
        guard endedFile != nil else { return }
        if state.withLock({ $0.rewrites.request() }) { startWriter() }
    }

    /// Asks for a rewrite of the file and returns once one that began after this call is durable.
    func saveNow() async {
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

    func loadSessions() {
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
