import BreakGlassAuditFormat
import Testing

@testable import BreakGlassAuditLog

/// Every caller's event in every phase of the writer: what the caller hears (signal the writer or
/// not, refused, closed), then what the writer does next (or, once it is finishing, whom it resumes
/// when it has finished).
extension AuditWriterQueueTests {
    /// A queue brought into each phase the way the log gets there.
    static var phases: [(name: String, make: () -> Queue)] {
        [
            ("starting", { Self.queue() }),
            (
                "idle",
                {
                    var queue = Self.queue()
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "idle until due",
                {
                    var queue = Self.queue(checkpointSize: -1)
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "lingering",
                {
                    var queue = Self.queue()
                    _ = queue.submit()
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "gathering",
                {
                    var queue = Self.queue()
                    for _ in 0..<4 { _ = queue.append() }
                    _ = queue.step()
                    queue.wrote(4)
                    _ = queue.append()
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "writing",
                {
                    var queue = Self.queue()
                    _ = queue.append()
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "publishing",
                {
                    var queue = Self.queue()
                    _ = queue.checkpoint("w")
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "closing",
                {
                    var queue = Self.queue()
                    _ = queue.closing("c")
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "finishing",
                {
                    var queue = Self.queue()
                    _ = queue.closing("c")
                    _ = queue.step()
                    _ = queue.step()
                    return queue
                }
            ),
            (
                "finished",
                {
                    var queue = Self.queue()
                    _ = queue.closing("c")
                    _ = queue.step()
                    _ = queue.step()
                    _ = queue.writerFinished()
                    return queue
                }
            ),
            (
                "stopped",
                {
                    var queue = Self.queue()
                    _ = queue.stop(AuditLogError(.io, "disk gone"))
                    _ = queue.step()
                    return queue
                }
            ),
        ]
    }

    /// What a caller does, and what it hears.
    static var events: [(name: String, apply: (inout Queue) -> String)] {
        [
            ("append", { $0.append() }),
            ("submit", { $0.submit() }),
            ("checkpoint", { $0.checkpoint("x") }),
            ("close", { $0.closing("x") }),
            ("stop", { $0.stop(AuditLogError(.io, "late")).first ? "stop" : "stop again" }),
        ]
    }

    static let closingRefusal = "refused: the audit log is closing"

    /// phase: append, submit, checkpoint, close, stop; each "what the caller hears -> what follows".
    static let expected: [String: [String]] = [
        "starting": ["queued -> write 0", "queued -> wait +2", "queued -> publish x", "queued -> publish", "stop -> wait"],
        "idle": ["wake -> write 0", "wake -> wait +2", "wake -> publish x", "wake -> publish", "stop -> wait"],
        "idle until due": ["wake -> write 0", "wake -> wait +2", "wake -> publish x", "wake -> publish", "stop -> wait"],
        "lingering": ["wake -> write 0s 1", "queued -> wait +2", "wake -> write 0s", "wake -> write 0s", "stop -> wait"],
        "gathering": ["queued -> wait +1", "queued -> wait +1", "queued -> wait +1", "wake -> write 4", "stop -> wait"],
        "writing": ["queued -> write 1", "queued -> wait +2", "queued -> publish x", "queued -> publish", "stop -> wait"],
        "publishing": ["queued -> write 0", "queued -> wait +2", "queued -> publish x", "queued -> publish", "stop -> wait"],
        "closing": [
            "\(closingRefusal) -> finish", "\(closingRefusal) -> finish", "\(closingRefusal) -> finish", "queued -> finish",
            "stop -> finish",
        ],
        "finishing": [
            "\(closingRefusal) -> resume c", "\(closingRefusal) -> resume c", "\(closingRefusal) -> resume c", "queued -> resume c x",
            "stop -> resume c",
        ],
        "finished": [
            "\(closingRefusal) -> -", "\(closingRefusal) -> -", "\(closingRefusal) -> -", "closed -> -", "stop -> -",
        ],
        "stopped": [
            "refused: disk gone -> wait", "refused: disk gone -> wait", "refused: disk gone -> wait", "wake -> finish",
            "stop again -> wait",
        ],
    ]

    @Test(arguments: phases.indices)
    func everyEventInEveryPhase(_ index: Int) {
        let (phase, make) = Self.phases[index]
        var outcomes: [String] = []
        for (_, apply) in Self.events {
            var queue = make()
            let heard = apply(&queue)
            // The count of awaited entries always matches the entries.
            #expect(queue.awaited == queue.entries.filter(\.isAwaited).count)
            let then: String
            switch queue.phase {
            case .finishing: then = (["resume"] + queue.writerFinished()).joined(separator: " ")
            case .finished: then = "-"
            default: then = queue.step()
            }
            outcomes.append("\(heard) -> \(then)")
        }
        #expect(outcomes == Self.expected[phase], "\(phase)")
    }
}
