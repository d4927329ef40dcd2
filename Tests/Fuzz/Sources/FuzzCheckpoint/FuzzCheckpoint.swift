import Crypto
import Foundation
import FuzzSupport

@testable import BreakGlassAuditFormat

/// Signed notes and C2SP checkpoints, two ways, chosen by the first byte:
/// - even: the input is a signed checkpoint as read from a file or a mirror. A parsed checkpoint
///   writes back to the same body, and a parsed note is well formed.
/// - odd: the input is a body, signed with the log's key. The verifier accepts the note exactly when
///   the body is a checkpoint of this log that a note can carry.
@main
enum FuzzCheckpointMain {
    static func main() {
        runFuzzer { data, size in fuzzCheckpoint(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    guard let mode = input.byte() else { return 0 }
    let text = input.restText
    let verifier = CheckpointFixture.signer.verifier
    if mode & 1 == 0 {
        if let note = SignedNote(text: text) {
            let body = Array(note.body.utf8)
            let blankLine = zip(body, body.dropFirst()).contains { $0 == 0x0A && $1 == 0x0A }
            require(body.last == 0x0A && !blankLine && !note.signatures.isEmpty, "a malformed note parsed")
            if let checkpoint = Checkpoint(body: note.body) {
                require(Checkpoint(body: checkpoint.body) == checkpoint, "a checkpoint does not survive writing it back")
                require(!checkpoint.origin.utf8.contains { $0 <= 0x20 }, "origin \(checkpoint.origin.debugDescription)")
            }
        }
        _ = try? AuditVerifier.parse(text, label: "fuzz", verifier: verifier)
    } else {
        guard let note = try? CheckpointFixture.signer.sign(text) else { return 0 }
        let parsed = try? AuditVerifier.parse(note, label: "fuzz", verifier: verifier)
        let expected = Checkpoint(body: text).flatMap { $0.origin == verifier.name ? $0 : nil }
        let bytes = Array(text.utf8)
        let carried =
            bytes.last == 0x0A && !zip(bytes, bytes.dropFirst()).contains { $0 == 0x0A && $1 == 0x0A }
            && !bytes.contains { ($0 < 0x20 && $0 != 0x0A) || $0 == 0x7F } && note.utf8.count <= 1 << 20
        require(parsed == (carried ? expected : nil), "verifier said \(String(describing: parsed)) for body \(text.debugDescription)")
    }
    return 0
}

/// The log's signing key, fixed so that saved inputs reproduce.
enum CheckpointFixture {
    static let signer = NoteSigner(name: "fuzz.example/log", privateKey: fixedSigningKey(9))
}
