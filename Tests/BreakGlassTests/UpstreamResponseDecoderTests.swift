import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BreakGlassProxy

/// `UpstreamResponseDecoder` in an `EmbeddedChannel`: NIO's answer parser made new between exchanges,
/// and what it refuses (bytes after an answer it kept, bytes while idle).
@Suite struct UpstreamResponseDecoderTests {
    /// Collects answer parts; on each answer's end it asks the decoder to renew, as the pool's
    /// check-in does, and keeps what the renewal said.
    final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let decoder: UpstreamResponseDecoder
        var heads: [HTTPResponseHead] = []
        var renewals: [Bool] = []
        var errors: [any Error] = []

        init(decoder: UpstreamResponseDecoder) {
            self.decoder = decoder
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): heads.append(head)
            case .body: break
            case .end: decoder.renew { self.renewals.append($0) }
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            errors.append(error)
        }
    }

    static func channel() throws -> (EmbeddedChannel, Collector) {
        let decoder = UpstreamResponseDecoder(forUpgrade: false)
        let collector = Collector(decoder: decoder)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([ByteToMessageHandler(decoder), collector])
        return (channel, collector)
    }

    static func ask(_ channel: EmbeddedChannel) throws {
        try channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        _ = try channel.readOutbound(as: HTTPClientRequestPart.self)
    }

    @Test func aCleanAnswerRenewsAndTheNextAnswerDecodes() throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        #expect(collector.renewals == [true])
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
        #expect(collector.heads.map(\.status) == [.ok, .created])
        #expect(collector.renewals == [true, true])
        #expect(collector.errors.isEmpty)
    }

    @Test func bytesAfterAnAnswerInTheSameReadRefuseTheRenewal() throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        try channel.writeInbound(
            ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + "HTTP/1.1 200 OK\r\nX-Injected: yes\r\nX-Swallow: "))
        #expect(collector.renewals == [false])
    }

    @Test func bytesWhileIdleAreAnError() throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        #expect(collector.renewals == [true])
        // One byte, not a whole part: nobody asked for it.
        try channel.writeInbound(ByteBuffer(string: "H"))
        #expect(collector.errors.count == 1)
        #expect(collector.errors.first is UpstreamResponseDecoder.SpokeOutOfTurn)
        #expect(collector.heads.count == 1)
    }

    @Test func aRenewalOutsideADecodeIsImmediate() throws {
        let (channel, _) = try Self.channel()
        let decoder = try channel.pipeline.syncOperations.handler(type: Collector.self).decoder
        var said: Bool?
        decoder.renew { said = $0 }
        #expect(said == true)
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 204 No Content\r\n\r\n"))
    }
}
