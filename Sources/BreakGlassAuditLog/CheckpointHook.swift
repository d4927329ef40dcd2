import BreakGlassAuditFormat
import Foundation
import Logging
import Synchronization

/// Runs the checkpoint hook command with the signed checkpoint on standard input, one run at a time,
/// off the writer thread; a checkpoint that arrives while the hook still runs is skipped for it.
final class CheckpointHook: Sendable {
    let command: [String]
    private let running = Atomic<Bool>(false)

    init?(_ command: [String]?) {
        guard let command, !command.isEmpty else { return nil }
        self.command = command
    }

    func run(note: String, logger: Logger) {
        guard let executable = command.first else { return }
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            logger.warning("checkpoint hook still running; this checkpoint is skipped for it")
            return
        }
        let arguments = Array(command.dropFirst())
        Thread.detachNewThread {
            defer { self.running.store(false, ordering: .releasing) }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            let input = Pipe()
            process.standardInput = input
            do {
                try process.run()
                try input.fileHandleForWriting.write(contentsOf: Data(note.utf8))
                try input.fileHandleForWriting.close()
                process.waitUntilExit()
                if process.terminationStatus != 0 {
                    logger.error(
                        "checkpoint hook failed", metadata: ["status": "\(process.terminationStatus)", "command": "\(executable)"])
                }
            } catch {
                logger.error("checkpoint hook could not run", metadata: ["command": "\(executable)", "error": "\(error)"])
            }
        }
    }
}
