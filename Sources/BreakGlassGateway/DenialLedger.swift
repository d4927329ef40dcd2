import BreakGlassCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// Summarizes refusals made without valid credentials, so that nobody can fill the audit log
/// with them: per source address and event kind, at most one record per interval, carrying
/// `count` (the refusals in that interval), `last_at` (the time of the last one) and the fields of
/// the first one as a sample.
///
/// A bucket opens at a source's first refusal and is recorded when its interval ends (a task
/// scheduled on an event loop), or at `flush`. Memory is bounded: beyond `maximumSources` open
/// buckets, refusals of each kind share one overflow bucket whose `source` is `other`. String
/// fields of every record are cut to `fieldLimit` bytes.
public final class DenialLedger: Sendable {
    /// Longest string field value, in UTF-8 bytes, in a denial record (a cut value ends in `…`).
    public static let fieldLimit = 128
    /// Most elements of a list field in a denial record.
    public static let listLimit = 16
    /// The `source` of the overflow bucket.
    public static let overflowSource = "other"

    private struct Key: Hashable {
        var source: String
        var kind: AuditEvent.Kind
    }

    private struct Bucket {
        var id: UInt64
        var sample: AuditEvent
        var count: Int
        var last: Date
        var overflow: Bool
        var timer: Scheduled<Void>?
    }

    private struct State {
        var buckets: [Key: Bucket] = [:]
        var nextID: UInt64 = 0
    }

    let maximumSources: Int
    private let state = Mutex(State())
    private let audit: any AuditSink
    private let clock: any WallClock
    private let group: any EventLoopGroup
    private let interval: @Sendable () -> Duration
    private let logger: Logger

    /// `interval` is read when a bucket opens (so that a policy reload applies to the next one).
    public init(
        audit: any AuditSink,
        clock: any WallClock,
        group: any EventLoopGroup,
        interval: @escaping @Sendable () -> Duration,
        maximumSources: Int = 4096,
        logger: Logger
    ) {
        self.audit = audit
        self.clock = clock
        self.group = group
        self.interval = interval
        self.maximumSources = max(1, maximumSources)
        self.logger = logger
    }

    /// Counts one refusal from `source` (an address, or an IPv6 /64 as `IPAddress.lockoutKey`
    /// gives it; nil counts as `unknown`). `event` is the refusal's record, kept as the sample when
    /// it opens a bucket.
    public func count(_ event: AuditEvent, source: String?) {
        let now = clock.now()
        state.withLock { state in
            var key = Key(source: BoundedText.cut(source ?? "unknown", bytes: Self.fieldLimit), kind: event.kind)
            if state.buckets[key] == nil && state.buckets.count >= maximumSources {
                key.source = Self.overflowSource
            }
            if state.buckets[key] != nil {
                state.buckets[key]?.count += 1
                state.buckets[key]?.last = now
                return
            }
            let id = state.nextID
            state.nextID &+= 1
            var sample = Self.bounded(event)
            let overflow = key.source == Self.overflowSource
            if overflow { sample.fields["source"] = .string(Self.overflowSource) }
            let after = TimeAmount.milliseconds(max(1, interval().totalMilliseconds))
            let opened = key
            let timer = group.next().scheduleTask(in: after) { self.close(opened, id: id) }
            state.buckets[key] = Bucket(id: id, sample: sample, count: 1, last: now, overflow: overflow, timer: timer)
        }
    }

    /// Counts one refusal from `address`, keyed as `IPAddress.lockoutKey` (IPv6 per /64).
    public func count(_ event: AuditEvent, address: IPAddress?) {
        count(event, source: address?.lockoutKey)
    }

    /// Records every open bucket now and waits until the sink has them (for shutdown).
    public func flush() async {
        let buckets = state.withLock { state in
            let taken = Array(state.buckets.values)
            state.buckets.removeAll()
            return taken
        }
        await withTaskGroup(of: Void.self) { group in
            for bucket in buckets {
                bucket.timer?.cancel()
                let event = Self.record(bucket)
                group.addTask {
                    do {
                        try await self.audit.record(event)
                    } catch {
                        self.logger.error("denial summary not recorded", metadata: ["kind": "\(event.kind)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Number of open buckets (for tests and metrics).
    public var openBuckets: Int { state.withLock { $0.buckets.count } }

    /// `event` with every string field cut to `fieldLimit` bytes and every list to `listLimit`
    /// elements of that length: for every denial record, summarized or not.
    public static func bounded(_ event: AuditEvent) -> AuditEvent {
        var event = event
        for (name, value) in event.fields {
            switch value {
            case .string(let text) where text.utf8.count > fieldLimit:
                event.fields[name] = .string(BoundedText.cut(text, bytes: fieldLimit))
            case .strings(let list) where list.count > listLimit || list.contains(where: { $0.utf8.count > fieldLimit }):
                event.fields[name] = .strings(list.prefix(listLimit).map { BoundedText.cut($0, bytes: fieldLimit) })
            default:
                break
            }
        }
        return event
    }

    private func close(_ key: Key, id: UInt64) {
        let bucket: Bucket? = state.withLock { state in
            guard let bucket = state.buckets[key], bucket.id == id else { return nil }
            state.buckets[key] = nil
            return bucket
        }
        if let bucket { audit.submit(Self.record(bucket)) }
    }

    private static func record(_ bucket: Bucket) -> AuditEvent {
        var event = bucket.sample
        event.fields["count"] = .integer(Int64(bucket.count))
        event.fields["last_at"] = .time(bucket.last)
        return event
    }
}
