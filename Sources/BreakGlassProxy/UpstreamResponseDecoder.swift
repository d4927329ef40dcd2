import NIOCore
import NIOHTTP1

/// NIO's decoder of an upstream connection's answers (`HTTPResponseDecoder`, which does all the
/// parsing), readied before a kept-alive connection serves another exchange, so that nothing of one
/// exchange's bytes reaches the next one's answer:
/// - bytes that followed an answer in the same read (the start of an answer nobody asked for) stay
///   in the old parser, which is dropped for a new one; when the old parser kept some of them to
///   finish later, the connection is not reused at all;
/// - bytes that arrive while the connection is idle (no request written since) are an error, which
///   closes the connection.
///
/// The parser is kept, not made new, only when the answer's end was provably the last byte it was
/// given: the end came in the same decode right after a body part whose last byte was the last byte
/// of that decode's input (body parts are slices of it). Then the parser read nothing after the
/// answer and stands where a new one starts. Anything else (a head-only or chunked answer, bytes
/// after the end, a copied body) makes a new parser. This relies on `UpstreamHTTPHandler` coming
/// right after this decoder's `ByteToMessageHandler` and telling it every part as it arrives
/// (`delivered`); a handler between them that held parts back would only make the parser new.
final class UpstreamResponseDecoder: ByteToMessageDecoder, WriteObservingByteToMessageDecoder {
    typealias InboundOut = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart

    /// The upstream sent bytes while no request was waiting for them.
    struct SpokeOutOfTurn: Error {}

    private let forUpgrade: Bool
    private var inner: HTTPResponseDecoder
    private var context: ChannelHandlerContext?
    /// Inside `inner.decode`: a renewal waits until it returns.
    private var decoding = false
    /// Bytes the parser kept after its last `decode` (part of a message it has not finished).
    private var keptBytes = 0
    /// Renewed and no request written since: any byte is out of turn.
    private var idle = false
    private var pendingRenewal: ((Bool) -> Void)?
    /// The address just past the input of the decode in progress (`readableEnd`); nil outside one.
    private var inputEnd: UInt?
    /// The last body part of the decode in progress ended at `inputEnd`.
    private var bodyReachedInputEnd = false
    /// An answer's end came right after such a body part: the parser read nothing after it.
    private var endedAtInputEnd = false
    /// How many times the parser was made new (for tests).
    private(set) var parsersMade = 1

    /// `forUpgrade`: the connection is made for a WebSocket upgrade, and the bytes after the `101`
    /// go to the tunnel when the decoder leaves.
    init(forUpgrade: Bool) {
        self.forUpgrade = forUpgrade
        self.inner = Self.parser(forUpgrade: forUpgrade)
    }

    private static func parser(forUpgrade: Bool) -> HTTPResponseDecoder {
        HTTPResponseDecoder(leftOverBytesStrategy: forUpgrade ? .forwardBytes : .fireError)
    }

    /// Readies the decoder for the next exchange; `done` learns whether the connection may be reused
    /// (false: the old parser kept bytes of an answer nobody asked for). During a decode (the answer's
    /// end is being delivered) this happens once that decode has returned.
    func renew(_ done: @escaping (_ reusable: Bool) -> Void) {
        if decoding {
            pendingRenewal = done
        } else {
            done(renewNow())
        }
    }

    private func renewNow() -> Bool {
        let parserIsClean = endedAtInputEnd
        endedAtInputEnd = false
        guard keptBytes == 0, let context else { return false }
        if !parserIsClean {
            inner.decoderRemoved(context: context)
            inner = Self.parser(forUpgrade: forUpgrade)
            inner.decoderAdded(context: context)
            parsersMade += 1
        }
        idle = true
        return true
    }

    /// A part the parser delivered, as the handler after the decoder received it: tells whether an
    /// answer ended at the last byte of the decode's input.
    func delivered(_ part: HTTPClientResponsePart) {
        guard decoding else { return }
        switch part {
        case .head:
            bodyReachedInputEnd = false
        case .body(let buffer):
            bodyReachedInputEnd = inputEnd != nil && Self.readableEnd(buffer) == inputEnd
        case .end:
            endedAtInputEnd = bodyReachedInputEnd
            bodyReachedInputEnd = false
        }
    }

    /// The address just past `buffer`'s readable bytes (compared, never read); nil when it has none.
    private static func readableEnd(_ buffer: ByteBuffer) -> UInt? {
        buffer.withUnsafeReadableBytes { bytes in
            guard let start = bytes.baseAddress, bytes.count > 0 else { return nil }
            return UInt(bitPattern: start) + UInt(bytes.count)
        }
    }

    func decoderAdded(context: ChannelHandlerContext) {
        self.context = context
        inner.decoderAdded(context: context)
    }

    func decoderRemoved(context: ChannelHandlerContext) {
        inner.decoderRemoved(context: context)
        self.context = nil
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if idle { throw SpokeOutOfTurn() }
        decoding = true
        inputEnd = Self.readableEnd(buffer)
        bodyReachedInputEnd = false
        endedAtInputEnd = false
        let state: DecodingState
        do {
            state = try inner.decode(context: context, buffer: &buffer)
        } catch {
            decoding = false
            endedAtInputEnd = false
            if let done = pendingRenewal {
                pendingRenewal = nil
                done(false)
            }
            throw error
        }
        decoding = false
        keptBytes = buffer.readableBytes
        if let done = pendingRenewal {
            pendingRenewal = nil
            done(renewNow())
        }
        return state
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try inner.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }

    func write(data: HTTPClientRequestPart) {
        if case .head = data { idle = false }
        inner.write(data: data)
    }
}
