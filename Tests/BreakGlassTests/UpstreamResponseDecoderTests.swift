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
        var bodies: [String] = []
        var renewals: [Bool] = []
        var errors: [any Error] = []

        init(decoder: UpstreamResponseDecoder) {
            self.decoder = decoder
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let part = unwrapInboundIn(data)
            decoder.delivered(part)
            switch part {
            case .head(let head): heads.append(head)
            case .body(let buffer): bodies.append(String(buffer: buffer))
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
        // The body's last byte was the last byte read: the parser stands at a new answer and is kept.
        #expect(collector.decoder.parsersMade == 1)
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
        #expect(collector.heads.map(\.status) == [.ok, .created])
        #expect(collector.renewals == [true, true])
        // No body shows where the answer ended: a new parser.
        #expect(collector.decoder.parsersMade == 2)
        #expect(collector.errors.isEmpty)
    }

    /// The start of an answer nobody asked for, so short that NIO keeps none of its bytes (a status
    /// line's first bytes live only in the parser): the parser is made new, and the next answer is
    /// the upstream's own, not one grafted onto the injected start.
    @Test func aPartialStatusLineAfterAnAnswerMakesANewParser() throws {
        for injected in ["H", "HTTP/1.1 2", "HTTP/1.1 200 OK\r\n"] {
            let (channel, collector) = try Self.channel()
            try Self.ask(channel)
            try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + injected))
            #expect(collector.renewals == [true], "\(injected)")
            #expect(collector.decoder.parsersMade == 2, "\(injected)")
            try Self.ask(channel)
            try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nsecond"))
            #expect(collector.heads.map(\.status) == [.ok, .created], "\(injected)")
            #expect(collector.bodies == ["ok", "second"], "\(injected)")
            #expect(collector.errors.isEmpty, "\(injected)")
        }
    }

    /// A body that arrives over several reads ends the answer at the last read's last byte: kept.
    /// A chunked answer ends with bytes after its last body part: a new parser.
    @Test func theParserIsKeptOnlyWhenTheBodyEndsTheInput() throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsec"))
        try channel.writeInbound(ByteBuffer(string: "ond"))
        #expect(collector.renewals == [true])
        #expect(collector.decoder.parsersMade == 1)
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
        #expect(collector.renewals == [true, true])
        #expect(collector.decoder.parsersMade == 2)
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast"))
        #expect(collector.bodies == ["sec", "ond", "ok", "last"])
        #expect(collector.errors.isEmpty)
    }

    @Test func bytesAfterAnAnswerInTheSameReadRefuseTheRenewal() throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        try channel.writeInbound(
            ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + "HTTP/1.1 200 OK\r\nX-Injected: yes\r\nX-Swallow: "))
        #expect(collector.renewals == [false])
    }

    /// Answers whose body ends the last read, however they arrive: an informational `100` first, a
    /// head split across reads, an HTTP/1.0 keep-alive answer. The parser is kept, and the next
    /// answer decodes as the upstream's own.
    @Test(arguments: [
        ["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
        ["HTTP/1.1 200 OK\r\nContent-Le", "ngth: 2\r\n\r\nok"],
        ["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"],
    ])
    func anAnswerWhoseBodyEndsTheReadKeepsTheParser(reads: [String]) throws {
        let (channel, collector) = try Self.channel()
        try Self.ask(channel)
        for read in reads { try channel.writeInbound(ByteBuffer(string: read)) }
        #expect(collector.renewals == [true])
        #expect(collector.decoder.parsersMade == 1)
        try Self.ask(channel)
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nsecond"))
        #expect(collector.heads.map(\.status) == [.ok, .created])
        #expect(collector.bodies == ["ok", "second"])
        #expect(collector.errors.isEmpty)
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
