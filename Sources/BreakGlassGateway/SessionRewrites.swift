/// When the sessions file is rewritten, as a value: one rewrite at a time; requests made while one
/// runs share the next; a caller that waits is told once a rewrite that began after its request is
/// durable. The registry keeps this in its state and performs what it says on a thread pool.
struct SessionRewrites<Waiter> {
    /// Requests so far; a rewrite that begins covers every request made before it.
    private(set) var requested = 0
    /// The newest request a finished rewrite covered.
    private(set) var written = 0
    /// A writer is running (it loops while requests come in).
    private(set) var writing = false
    private var waiters: [(version: Int, waiter: Waiter)] = []

    /// Asks for a rewrite; `waiter` is handed back by `finished` once it is durable. True when no
    /// writer runs and the caller must start one.
    mutating func request(waiter: Waiter? = nil) -> Bool {
        requested += 1
        if let waiter { waiters.append((requested, waiter)) }
        guard !writing else { return false }
        writing = true
        return true
    }

    /// The writer begins a rewrite (reading the sessions under the same lock): the request it covers.
    func begin() -> Int { requested }

    /// The writer made the rewrite that began at `version` durable (or failed to: the file is a
    /// cache, and the failure is logged): the waiters it satisfies, and whether to write again.
    mutating func finished(_ version: Int) -> (done: [Waiter], again: Bool) {
        written = max(written, version)
        let done = waiters.filter { $0.version <= written }.map(\.waiter)
        waiters.removeAll { $0.version <= written }
        let again = requested > written
        if !again { writing = false }
        return (done, again)
    }
}
