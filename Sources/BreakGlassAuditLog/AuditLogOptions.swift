import BreakGlassAuditFormat
import CoreMetrics

/// Tuning and wiring of an audit log.
public struct AuditLogOptions: Sendable {
    /// Size each segment file is preallocated to.
    public var segmentSize: Int
    /// Space kept at the end of the current segment: when the next segment cannot be made, only
    /// events that are not grants may use it (denials, alarms), and new grants are refused.
    public var reserve: Int
    /// Most events written in one batch (one write, one fdatasync).
    public var maximumBatch: Int
    /// Most events waiting for the writer; beyond that, appends fail at once.
    public var maximumPending: Int
    /// How long events that nobody waits for (`submit`, such as a proxied request's record) may wait
    /// for more before they are written, so that one flush serves many. A caller that waits for its
    /// record, a checkpoint request or a full batch ends the wait at once.
    public var submitDelay: Duration
    /// A new checkpoint is signed at most this often while events arrive (and at close).
    public var checkpointInterval: Duration
    /// Folders (other mounts, other machines) that receive every new checkpoint.
    public var mirrors: [String]
    /// A command (argv) that receives every new checkpoint on standard input.
    public var checkpointHook: [String]?
    /// Free space below which the log reports itself degraded.
    public var warnFreeBytes: Int
    /// Where the writer reports appends, batch sizes and fsync latency; nil: nowhere.
    public var metrics: (any MetricsFactory)?

    /// Options with the given values; the defaults suit a production gateway.
    public init(
        segmentSize: Int = 64 << 20,
        reserve: Int = 1 << 20,
        maximumBatch: Int = 4096,
        maximumPending: Int = 65_536,
        submitDelay: Duration = .milliseconds(2),
        checkpointInterval: Duration = .seconds(1),
        mirrors: [String] = [],
        checkpointHook: [String]? = nil,
        warnFreeBytes: Int = 1 << 30,
        metrics: (any MetricsFactory)? = nil
    ) {
        self.segmentSize = segmentSize
        self.reserve = reserve
        self.maximumBatch = maximumBatch
        self.maximumPending = maximumPending
        self.submitDelay = submitDelay
        self.checkpointInterval = checkpointInterval
        self.mirrors = mirrors
        self.checkpointHook = checkpointHook
        self.warnFreeBytes = warnFreeBytes
        self.metrics = metrics
    }
}
