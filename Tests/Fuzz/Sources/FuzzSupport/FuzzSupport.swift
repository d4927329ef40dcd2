import CFuzzDriver
import Crypto
import Foundation
import Synchronization

/// Runs libFuzzer with `target` as its test function, with the command line's options; never returns.
public func runFuzzer(_ target: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
}

/// Ends the run as a crash that libFuzzer records with its input, when an invariant does not hold.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    FileHandle.standardError.write(Data(("invariant broken: " + message() + "\n").utf8))
    abort()
}

/// Runs an async operation to completion from libFuzzer's synchronous callback.
public func blocking<T: Sendable>(_ operation: @escaping @Sendable () async -> T) -> T {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await operation()
        result.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    guard let value = result.withLock({ $0 }) else {
        require(false, "an operation ended without a result")
        abort()
    }
    return value
}

/// An Ed25519 key made from a fixed seed, so that a saved crash input reproduces with the same key.
public func fixedSigningKey(_ seed: UInt8) -> Curve25519.Signing.PrivateKey {
    guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: seed, count: 32)) else {
        require(false, "a 32-byte Ed25519 seed was refused")
        abort()
    }
    return key
}

/// The fuzzer's input, read from the front.
public struct FuzzInput {
    private var bytes: ArraySlice<UInt8>

    /// The input bytes.
    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = ArraySlice(UnsafeBufferPointer(start: data, count: size))
    }

    /// The next byte, or nil at the end.
    public mutating func byte() -> UInt8? {
        bytes.popFirst()
    }

    /// The next `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let taken = Array(bytes.prefix(count))
        bytes = bytes.dropFirst(count)
        return taken
    }

    /// Everything not yet read.
    public var rest: [UInt8] { Array(bytes) }

    /// Everything not yet read, as text (invalid UTF-8 replaced, as a server decoding bytes would).
    public var restText: String { String(decoding: bytes, as: UTF8.self) }
}

/// Folders made by `scratchFolder`, removed when the process exits.
private let scratchFolders = Mutex<[String]>([])

/// A folder of this process in memory (/dev/shm when there is one), removed at exit.
public func scratchFolder(_ name: String) -> String {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let folder = base + "/breakglass-fuzz-\(name)-\(getpid())"
    let first = scratchFolders.withLock { folders in
        defer { folders.append(folder) }
        return folders.isEmpty
    }
    if first {
        atexit {
            for folder in scratchFolders.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: folder) }
        }
    }
    return folder
}
