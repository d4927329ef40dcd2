import AsyncHTTPClient
import BreakGlassCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle
import Synchronization

/// Delivers alerts to every configured sink without ever making the caller wait: each sink has a
/// bounded queue and one worker that retries with backoff. Every failed attempt and every dropped
/// alert is audited and counted. The workers run in `run()`, a service of the gateway's group;
/// graceful shutdown lets the queued alerts go out, for at most the grace period,
/// and then `run()` returns.
public final class AlertDispatcher: Service, Sendable {
    private struct Sink: Sendable {
        var settings: AlertSinkSettings
        var queue: AsyncStream<Alert>.Continuation
        var alerts: AsyncStream<Alert>
    }

    private let sinks: [Sink]
    private let gateway: String
    private let audit: any AuditSink
    private let metrics: GatewayMetrics?
    private let logger: Logger
    private let http: HTTPClient?
    private let backoff: Duration
    private let grace: Duration
    private let finished: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let lastFired = Mutex<[String: ContinuousClock.Instant]>([:])

    /// Queues for every sink (delivered once `run()` runs). `backoff` is the wait after the first
    /// failed attempt (doubling, at most 60 s); `grace` bounds how long queued alerts may take to go
    /// out after graceful shutdown.
    public init(
        sinks settings: [AlertSinkSettings], gateway: String, audit: any AuditSink, metrics: GatewayMetrics?, logger: Logger,
        backoff: Duration = .seconds(1), grace: Duration = .seconds(2)
    ) {
        self.gateway = gateway
        self.audit = audit
        self.metrics = metrics
        self.logger = logger
        self.backoff = backoff
        self.grace = grace
        let needsHTTP = settings.contains { if case .webhook = $0.target { true } else { false } }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        self.http = needsHTTP ? HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration) : nil
        self.sinks = settings.map { sink in
            let (alerts, queue) = AsyncStream.makeStream(of: Alert.self, bufferingPolicy: .bufferingOldest(sink.queue))
            return Sink(settings: sink, queue: queue, alerts: alerts)
        }
        self.finished = AsyncStream.makeStream(of: Void.self)
    }

    /// Delivers alerts, one worker per sink, until graceful shutdown and the queues
    /// are empty, or until the grace period after it has passed, or cancellation; then closes the
    /// HTTP client.
    public func run() async {
        enum Ended { case shutdownSeen, drained, graceOver }
        await withTaskGroup(of: Ended.self) { group in
            group.addTask {
                await withTaskGroup(of: Void.self) { workers in
                    for sink in self.sinks {
                        workers.addTask {
                            let tls = self.tlsConfiguration(sink.settings)
                            for await alert in sink.alerts {
                                await self.deliver(alert, to: sink.settings, tls: tls, backoff: self.backoff)
                            }
                        }
                    }
                }
                return .drained
            }
            group.addTask {
                // Graceful shutdown (or cancellation): no more alerts are taken.
                try? await gracefulShutdown()
                self.finish()
                return .shutdownSeen
            }
            group.addTask {
                for await _ in self.finished.stream { break }
                try? await Task.sleep(for: self.grace)
                return .graceOver
            }
            // The queues drained, or the grace period ran out: the rest stops.
            while let ended = await group.next(), ended == .shutdownSeen {}
            group.cancelAll()
        }
        try? await http?.shutdown()
    }

    /// Takes no more alerts; those queued still go out while `run()` lasts (at most the grace period).
    private func finish() {
        for sink in sinks { sink.queue.finish() }
        finished.continuation.yield()
        finished.continuation.finish()
    }

    /// Queues the alert for every sink; returns at once. A full queue drops it for that sink (audited).
    public func fire(_ alert: Alert) {
        for sink in sinks {
            if case .dropped = sink.queue.yield(alert) {
                dropped(alert, sink: sink.settings.name, why: "the sink's queue of \(sink.settings.queue) alerts is full")
            }
        }
    }

    /// Fires the alert unless one of the same kind went out less than `every` ago (for conditions
    /// that every request would otherwise report again).
    public func fireOnce(_ alert: Alert, every: Duration) {
        let now = ContinuousClock.now
        let due = lastFired.withLock { last in
            if let previous = last[alert.kind], previous.duration(to: now) < every { return false }
            last[alert.kind] = now
            return true
        }
        if due { fire(alert) }
    }

    // MARK: delivery

    private func deliver(_ alert: Alert, to sink: AlertSinkSettings, tls: Result<TLSConfiguration, any Error>?, backoff: Duration) async {
        let body = alert.json(gateway: gateway)
        var wait = backoff
        for attempt in 1...sink.attempts {
            let failure: String?
            switch sink.target {
            case .exec(let command):
                failure = await Self.runExec(command, input: body, timeout: sink.timeout, directory: sink.workingDirectory)
            case .webhook(let url, _):
                failure = await post(url, body: body, tls: tls, timeout: sink.timeout)
            }
            guard let failure else {
                metrics?.alert(sink: sink.name, outcome: "delivered")
                return
            }
            metrics?.alert(sink: sink.name, outcome: "failed")
            logger.warning(
                "alert delivery failed",
                metadata: ["sink": "\(sink.name)", "alert": "\(alert.kind)", "attempt": "\(attempt)", "error": "\(failure)"])
            audit.submit(
                AuditEvent(
                    kind: .alertFailed, time: Date(),
                    fields: [
                        "sink": .string(sink.name), "alert": .string(alert.kind), "attempt": .integer(Int64(attempt)),
                        "error": .string(BoundedText.cut(failure, bytes: 500)),
                    ]))
            guard attempt < sink.attempts, !Task.isCancelled else { break }
            try? await Task.sleep(for: wait)
            if Task.isCancelled { break }
            wait = min(wait * 2, .seconds(60))
        }
        dropped(alert, sink: sink.name, why: "not delivered after \(sink.attempts) attempts")
    }

    private func dropped(_ alert: Alert, sink: String, why: String) {
        metrics?.alert(sink: sink, outcome: "dropped")
        logger.error("alert dropped", metadata: ["sink": "\(sink)", "alert": "\(alert.kind)", "why": "\(why)"])
        audit.submit(
            AuditEvent(
                kind: .alertDropped, time: Date(), fields: ["sink": .string(sink), "alert": .string(alert.kind), "why": .string(why)]))
    }

    private func tlsConfiguration(_ sink: AlertSinkSettings) -> Result<TLSConfiguration, any Error>? {
        guard case .webhook(_, let ca) = sink.target else { return nil }
        return Result {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let ca { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
            return tls
        }
    }

    private func post(_ url: String, body: Data, tls: Result<TLSConfiguration, any Error>?, timeout: Duration) async -> String? {
        guard let http else { return "no HTTP client" }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "breakglass-alerts")
        request.body = .bytes(ByteBuffer(bytes: body))
        if case .success(let configuration) = tls { request.tlsConfiguration = configuration }
        if case .failure(let error) = tls { return "the webhook's CA does not load: \(error)" }
        do {
            let response = try await http.execute(request, timeout: .milliseconds(Int64(timeout.totalMilliseconds)))
            _ = try? await response.body.collect(upTo: 64 << 10)
            guard (200..<300).contains(response.status.code) else { return "the webhook answered \(response.status.code)" }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Runs the command in `directory` with `input` on standard input; nil on exit status 0 within
    /// `timeout`, else what went wrong (with the start of what the program wrote to standard error).
    static func runExec(_ command: [String], input: Data, timeout: Duration, directory: String?) async -> String? {
        guard let executable = command.first else { return "no program" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(command.dropFirst())
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        let pipe = Pipe()
        process.standardInput = pipe
        let exited = AsyncStream.makeStream(of: Int32.self)
        process.terminationHandler = { finished in
            exited.continuation.yield(finished.terminationStatus)
            exited.continuation.finish()
        }
        do {
            try process.run()
        } catch {
            return "cannot run \(executable): \(error)"
        }
        // A program that exits without reading gets EPIPE here, not a signal (SIGPIPE is ignored).
        try? pipe.fileHandleForWriting.write(contentsOf: input)
        try? pipe.fileHandleForWriting.close()
        let timer = Task {
            try await Task.sleep(for: timeout)
            process.terminate()
            try await Task.sleep(for: .seconds(1))
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        var status: Int32 = -1
        for await code in exited.stream { status = code }
        timer.cancel()
        // Cancelled (the gateway stopping) before the program exited: it is stopped, and its state
        // is not read, since a running process has no termination reason yet.
        if process.isRunning {
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
            return "\(executable) was stopped: the gateway is stopping"
        }
        // The program has exited: what it wrote is in the pipe (a pipe holds 64 KiB; a program that
        // writes more blocks and meets the timeout). Read without waiting: a child it left running
        // may still hold the pipe open.
        try? errors.fileHandleForWriting.close()
        let descriptor = errors.fileHandleForReading.fileDescriptor
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        let said = count > 0 ? String(decoding: buffer.prefix(count), as: UTF8.self) : ""
        try? errors.fileHandleForReading.close()
        let detail = said.isEmpty ? "" : ": " + said.split(separator: "\n").prefix(3).joined(separator: " / ")
        if process.terminationReason == .uncaughtSignal {
            return "\(executable) was killed by signal \(status) (it has \(timeout.policyText) to finish)"
        }
        return status == 0 ? nil : "\(executable) exited with status \(status)\(detail)"
    }
}
