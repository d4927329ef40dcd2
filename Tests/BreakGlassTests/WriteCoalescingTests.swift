import BreakGlassProxy
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// The client side joins an answer's small writes into one (one TLS record), in order, without
/// losing a promise or a byte.
@Suite struct WriteCoalescingTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(WriteCoalescingHandler())
        return channel
    }

    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var writes: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { writes.append(String(buffer: buffer)) }
        return writes
    }

    @Test func smallWritesBetweenFlushesGoOutAsOneWithEveryPromiseKept() throws {
        let channel = try Self.channel()
        let done = Mutex<[Int]>([])
        for (index, text) in ["HTTP/1.1 200 OK\r\n\r\n", "ok\n", ""].enumerated() {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenSuccess { done.withLock { $0.append(index) } }
            channel.write(ByteBuffer(string: text), promise: promise)
        }
        #expect(try Self.written(channel).isEmpty)
        #expect(done.withLock { $0.isEmpty })
        channel.flush()
        #expect(try Self.written(channel) == ["HTTP/1.1 200 OK\r\n\r\nok\n"])
        #expect(done.withLock { $0 } == [0, 1, 2])
        _ = try channel.finish()
    }

    @Test func largeWritesPassInOrderAfterWhatWasJoined() throws {
        let channel = try Self.channel()
        let large = String(repeating: "x", count: WriteCoalescingHandler.limit)
        channel.write(ByteBuffer(string: "head "), promise: nil)
        channel.write(ByteBuffer(string: "body "), promise: nil)
        channel.write(ByteBuffer(string: large), promise: nil)
        channel.write(ByteBuffer(string: "tail"), promise: nil)
        channel.flush()
        #expect(try Self.written(channel) == ["head body ", large, "tail"])
        _ = try channel.finish()
    }

    @Test func removalPassesOnWhatItHolds() throws {
        let channel = try Self.channel()
        channel.write(ByteBuffer(string: "held"), promise: nil)
        let handler = try channel.pipeline.syncOperations.handler(type: WriteCoalescingHandler.self)
        try channel.pipeline.syncOperations.removeHandler(handler).wait()
        channel.flush()
        #expect(try Self.written(channel) == ["held"])
        _ = try channel.finish()
    }
}
