import NIOCore

/// Keeps a client connection's deadlines (`ClientDeadlines`): sits just above TLS, sees every
/// plaintext byte both ways and every read the gateway asks for, and checks the deadlines on a
/// timer. When one passes during HTTP it sends the expiry up the pipeline as a user event, so that
/// the HTTP handler can answer `408` before it closes; in a tunnel, or when nothing can be
/// answered, it closes the connection itself.
public final class ClientDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// Plaintext bytes from the client.
    public typealias InboundIn = ByteBuffer
    /// The same bytes, passed on unchanged.
    public typealias InboundOut = ByteBuffer
    /// Whatever the pipeline writes to the client.
    public typealias OutboundIn = Any
    /// The same writes, passed on unchanged.
    public typealias OutboundOut = Any

    private var deadlines: ClientDeadlines
    private var timer: RepeatedTask?
    private var context: ChannelHandlerContext?
    /// An expiry was reported; the connection closes if nobody has closed it after a grace moment.
    private var reported = false

    /// A handler for a connection that starts now: its first head is due `headTimeout` from now.
    public init(settings: ClientDeadlines.Settings) {
        self.deadlines = ClientDeadlines(settings: settings, now: .now())
    }

    /// Starts the timer that checks the deadlines.
    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let interval = deadlines.settings.checkInterval
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            handler.value.check()
        }
    }

    /// Stops the timer.
    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    /// Stops the timer and passes the event on.
    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    /// Counts the client's bytes and passes them on.
    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadlines.bytesRead(unwrapInboundIn(data).readableBytes, now: .now())
        context.fireChannelRead(data)
    }

    /// Notes that reads are held until the next `read`, and passes the event on.
    public func channelReadComplete(context: ChannelHandlerContext) {
        // Until the next read is asked for, the gateway holds the client's bytes back.
        deadlines.readsHeld(now: .now())
        context.fireChannelReadComplete()
    }

    /// Notes whether the client takes what it is sent, and passes the event on.
    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        deadlines.writabilityChanged(writable: context.channel.isWritable, now: .now())
        context.fireChannelWritabilityChanged()
    }

    /// Notes that reads resume, and asks for them.
    public func read(context: ChannelHandlerContext) {
        deadlines.readsResumed(now: .now())
        context.read()
    }

    /// Notes the activity and passes the write on.
    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        deadlines.bytesWritten(now: .now())
        context.write(data, promise: promise)
    }

    // MARK: what the HTTP handler reports

    /// A request head was decoded.
    public func headReceived() { deadlines.headReceived(now: .now()) }

    /// A request's end was decoded.
    public func requestEnded() { deadlines.requestEnded(now: .now()) }

    /// The gateway began to answer a request.
    public func answerStarted() { deadlines.answerStarted() }

    /// The answer's head is going out; from now on its bytes must keep moving.
    public func answerStreaming() { deadlines.answerStreaming(now: .now()) }

    /// The answer is complete.
    public func answerFinished() { deadlines.answerFinished(now: .now()) }

    /// The connection is a tunnel now.
    public func tunnelStarted() { deadlines.tunnelStarted(now: .now()) }

    // MARK: checks

    private func check() {
        guard let context, let expiry = deadlines.expiry(at: .now()) else { return }
        switch expiry {
        case .head, .body:
            // The HTTP handler answers 408 when it can and closes; if it is gone (or does not
            // close), the next check closes.
            if reported {
                context.close(promise: nil)
            } else {
                reported = true
                context.fireUserInboundEventTriggered(expiry)
            }
        case .idle, .answer, .tunnel:
            context.close(promise: nil)
        }
    }
}
