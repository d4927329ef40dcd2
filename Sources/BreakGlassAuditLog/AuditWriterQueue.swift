import BreakGlassAuditFormat
import BreakGlassCore

/// An entry of the audit writer's queue: an event whose caller waits for it to be durable (`append`),
/// or one nobody waits for (`submit`).
protocol AuditQueueEntry {
    var isAwaited: Bool { get }
}

/// The audit writer's queue, its waiters and its wake rule, as a value. Callers queue events,
/// checkpoint requests and `close` through it and get back what to do (refuse, signal the writer or
/// not); the writer thread asks it `next(now:)` and only performs the step it gets: write a batch,
/// sign a checkpoint, answer waiters, wait, finish. `AuditLog` keeps it in a
/// `SpinningCondition`; every decision is here and is tested with plain values.
///
/// The wake rule: a queue change signals the writer only while it waits (`idle`, `lingering`,
/// `gathering`) and only when what it waits for has come; while it works it looks at the queue
/// again before it waits, so a signal then would be wasted.
struct AuditWriterQueue<Entry: AuditQueueEntry, Waiter, Closer> {
    typealias Instant = ContinuousClock.Instant

    /// What the writer is doing.
    enum Phase: Equatable {
        /// Started, not yet looked at the queue.
        case starting
        /// Writing a batch (`Step.write`).
        case writing
        /// Signing a checkpoint, or answering waiters with the last one.
        case publishing
        /// Signing the last checkpoint after `close`.
        case closing
        /// Nothing to do: waits for anything, until the next checkpoint is due (nil: none is).
        case idle(until: Instant?)
        /// Holds events nobody waits for, to write more of them at once.
        case lingering(until: Instant)
        /// Holds events that callers wait for, a moment, until `target` are queued: the callers of the
        /// last batch are probably coming back, and one flush can serve them all.
        case gathering(target: Int, until: Instant)
        /// Done: the writer closes its files.
        case finishing
        /// The writer thread has ended.
        case finished

        /// Whether the writer waits in this phase (so only a signal wakes it before its time).
        var isWaiting: Bool {
            switch self {
            case .idle, .lingering, .gathering: true
            default: false
            }
        }
    }

    /// What the writer does next.
    enum Step {
        /// Wait for a signal, until then (nil: until signalled), and ask again.
        case wait(until: Instant?)
        /// Write these entries, in order, numbered on from `durableSize`, and resume their callers.
        case write([Entry])
        /// Sign a checkpoint of everything durable, then answer these waiters with it.
        case publish([Waiter])
        /// Nothing was written since the last checkpoint: answer these waiters with it.
        case answer([Waiter], note: String)
        /// Close the files, then call `writerFinished`.
        case finish
    }

    /// The answer to a queued event or checkpoint request: queued (signal the writer when `wake`), or refused.
    enum Admission<Refusal> {
        case queued(wake: Bool)
        case refused(Refusal)
    }

    /// The answer to `close`: queued (signal the writer when `wake`), or already closed.
    enum Closing {
        case queued(wake: Bool)
        case closed
    }

    /// What `stop` took from the queue, to refuse.
    struct Stopped {
        /// The log was not stopped before (later errors do not replace the first).
        var first: Bool
        var entries: [Entry]
        var waiters: [Waiter]
        /// The first error, which the log keeps.
        var failure: AuditLogError
    }

    /// The writer's tuning.
    struct Settings {
        /// Most entries in one batch.
        var maximumBatch: Int
        /// How long events nobody waits for may linger (zero: not at all).
        var submitDelay: Duration
        /// A checkpoint is due this long after the last one, once records were written since.
        var checkpointInterval: Duration
        /// Enough events nobody waits for to write at once.
        var lingerBatch = 256
        /// Longest a batch waits for the callers of the last one: a fraction of one fdatasync.
        var gatherWindow = Duration.milliseconds(1)
    }

    let settings: Settings
    /// What the log takes in: refusals, reservations and its condition.
    private(set) var intake: AuditIntake
    private(set) var phase = Phase.starting
    /// Events not yet handed to the writer, in order.
    private(set) var entries: [Entry] = []
    /// How many of `entries` have a caller waiting.
    private(set) var awaited = 0
    /// Checkpoint requests not yet handed to the writer.
    private(set) var waiters: [Waiter] = []
    /// Callers of `close`, resumed once the writer has finished.
    private(set) var closers: [Closer] = []
    /// The sequence number the next queued event will have, if every event before it is written.
    private(set) var nextSequence: Int
    /// Records durable on disk.
    private(set) var durableSize: Int
    /// Entries in the last batch handed out.
    private(set) var lastBatchSize = 0
    /// Size and time of the last checkpoint (-1: none yet), and its note when this writer signed it.
    private(set) var checkpointSize: Int
    private(set) var checkpointTime: Instant
    private(set) var lastNote: String?

    init(settings: Settings, maximumPending: Int, durableSize: Int, checkpointSize: Int, now: Instant) {
        self.settings = settings
        self.intake = AuditIntake(maximumPending: maximumPending)
        self.nextSequence = durableSize
        self.durableSize = durableSize
        self.checkpointSize = checkpointSize
        self.checkpointTime = now
    }

    // MARK: callers

    /// Queues the entry `make` builds for its sequence number, unless an event of this kind is refused
    /// now (`reserved` uses a place taken with `reserve`).
    mutating func enqueue(_ kind: AuditEvent.Kind, reserved: Bool, make: (_ sequence: Int) -> Entry) -> Admission<String> {
        if let refusal = intake.refusal(for: kind, reserved: reserved, queued: entries.count) { return .refused(refusal) }
        let entry = make(nextSequence)
        let isAwaited = entry.isAwaited
        nextSequence += 1
        // The entry's last use: appended without a copy.
        entries.append(entry)
        if isAwaited { awaited += 1 }
        let wake: Bool
        switch phase {
        case .idle: wake = true
        case .lingering: wake = isAwaited || entries.count >= settings.lingerBatch
        case .gathering(let target, _): wake = entries.count >= target
        default: wake = false
        }
        return .queued(wake: wake)
    }

    /// Whether an event of this kind would be queued now.
    func accepts(_ kind: AuditEvent.Kind) -> Bool {
        intake.accepts(kind, queued: entries.count)
    }

    /// Takes a place for one later event of this kind; false when it would be refused now.
    mutating func reserve(_ kind: AuditEvent.Kind) -> Bool {
        intake.reserve(kind, queued: entries.count)
    }

    mutating func cancelReservation() {
        intake.cancelReservation()
    }

    /// Queues a request for a checkpoint of everything durable now.
    mutating func requestCheckpoint(_ waiter: Waiter) -> Admission<AuditLogError> {
        if let stopped = intake.stopped { return .refused(stopped) }
        // The last checkpoint is signed by close; the writer may already have taken its last waiters.
        if intake.closing { return .refused(AuditLogError(.writerStopped, "the audit log is closing")) }
        waiters.append(waiter)
        switch phase {
        case .idle, .lingering: return .queued(wake: true)
        default: return .queued(wake: false)
        }
    }

    /// Takes nothing more: what is queued is written, a last checkpoint signed, and the writer ends.
    mutating func close(_ closer: Closer) -> Closing {
        guard phase != .finished else { return .closed }
        intake.close()
        closers.append(closer)
        return .queued(wake: phase.isWaiting)
    }

    /// How the log is doing.
    var health: AuditLog.Health { intake.health }

    // MARK: the writer

    /// What the writer does next, at `now`.
    mutating func next(now: Instant) -> Step {
        if intake.stopped != nil {
            // `stop` took everything queued, and the log takes nothing more: only close is left.
            if intake.closing {
                phase = .finishing
                return .finish
            }
            phase = .idle(until: nil)
            return .wait(until: nil)
        }
        if intake.closing {
            if !entries.isEmpty { return takeBatch() }
            if phase == .closing {
                phase = .finishing
                return .finish
            }
            // Always signed anew: the last checkpoint is the log's seal.
            phase = .closing
            return .publish(takeWaiters())
        }
        // Right after a batch (or with nothing queued), checkpoint requests and a due checkpoint come first.
        if phase == .writing || entries.isEmpty {
            if !waiters.isEmpty {
                phase = .publishing
                if durableSize == checkpointSize, let lastNote { return .answer(takeWaiters(), note: lastNote) }
                return .publish(takeWaiters())
            }
            if isCheckpointDue(now: now) {
                phase = .publishing
                return .publish([])
            }
        }
        if entries.isEmpty {
            let until = durableSize > checkpointSize ? checkpointTime + settings.checkpointInterval : nil
            phase = .idle(until: until)
            return .wait(until: until)
        }
        if awaited == 0, waiters.isEmpty, settings.submitDelay > .zero, entries.count < settings.lingerBatch {
            // Nobody waits for these records yet (proxied requests' records): let more join them.
            if case .lingering(let until) = phase {
                if now < until { return .wait(until: until) }
            } else {
                let until = now + settings.submitDelay
                phase = .lingering(until: until)
                return .wait(until: until)
            }
        }
        let target = lastBatchSize * 3 / 4
        if awaited > 0, entries.count < target {
            // Fewer callers wait than the last batch held: the rest are probably coming back.
            if case .gathering(_, let until) = phase {
                if now < until { return .wait(until: until) }
            } else {
                let until = now + settings.gatherWindow
                phase = .gathering(target: target, until: until)
                return .wait(until: until)
            }
        }
        return takeBatch()
    }

    /// Records up to `size` are durable.
    mutating func durable(_ size: Int) {
        durableSize = size
    }

    /// The writer signed a checkpoint of `size` records at `time`.
    mutating func published(size: Int, note: String, at time: Instant) {
        checkpointSize = size
        checkpointTime = time
        lastNote = note
    }

    /// The writer stopped for good: everything queued is taken, to refuse, and every later request is refused.
    mutating func stop(_ error: AuditLogError) -> Stopped {
        let first = intake.stop(error)
        defer { (entries, waiters, awaited) = ([], [], 0) }
        return Stopped(first: first, entries: entries, waiters: waiters, failure: intake.stopped ?? error)
    }

    /// The writer thread has ended: the callers of `close` to resume.
    mutating func writerFinished() -> [Closer] {
        phase = .finished
        defer { closers = [] }
        return closers
    }

    /// The log writes into its reserve; true when it was not already.
    mutating func enterReserve() -> Bool {
        intake.enterReserve()
    }

    mutating func leaveReserve() {
        intake.leaveReserve()
    }

    mutating func warn(_ text: String) {
        intake.warn(text)
    }

    private func isCheckpointDue(now: Instant) -> Bool {
        durableSize > checkpointSize && checkpointTime.duration(to: now) >= settings.checkpointInterval
    }

    private mutating func takeWaiters() -> [Waiter] {
        defer { waiters = [] }
        return waiters
    }

    /// Hands out the oldest entries, at most `maximumBatch`, numbered on from `durableSize`.
    private mutating func takeBatch() -> Step {
        // Events refused or dropped in earlier batches shift the numbers of those queued after them;
        // from here on they are right again (the writer frames the queued ones anew).
        nextSequence = durableSize + entries.count
        let batch: [Entry]
        if entries.count <= settings.maximumBatch {
            // The whole queue: handed over without copying its items under the lock.
            batch = entries
            entries = []
            entries.reserveCapacity(batch.count)
            awaited = 0
        } else {
            batch = Array(entries.prefix(settings.maximumBatch))
            entries.removeFirst(batch.count)
            awaited -= batch.reduce(0) { $0 + ($1.isAwaited ? 1 : 0) }
        }
        lastBatchSize = batch.count
        phase = .writing
        return .write(batch)
    }
}

extension AuditWriterQueue: Sendable where Entry: Sendable, Waiter: Sendable, Closer: Sendable {}
extension AuditWriterQueue.Step: Sendable where Entry: Sendable, Waiter: Sendable, Closer: Sendable {}
