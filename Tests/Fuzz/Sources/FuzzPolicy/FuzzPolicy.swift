import BreakGlassConfig
import Foundation
import FuzzSupport

/// Policy text through the loader and validator: it parses, or every problem says what is wrong, and
/// a problem under a key names its line. Never a crash, a hang or an unbounded allocation. The
/// policy's folder holds the files a policy names (`c.pem`, `k.pem`, `t.pem`, `a.pem`, `pam.d/`), so
/// that policies can pass and their pathways be checked.
@main
enum FuzzPolicyMain {
    static func main() {
        runFuzzer { data, size in fuzzPolicy(data, size) }
    }
}

/// One input. Exported under libFuzzer's name as well: whichever `main` the linker keeps runs it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // The loader refuses text that is not UTF-8 before parsing (PolicyLoader.load).
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    do {
        let policy = try PolicyLoader.parse(text: text, file: "fuzz.yaml", baseDirectory: PolicyFixture.folder)
        if ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil { print("accepted: \(policy.pathways.keys.sorted())") }
        require(!policy.pathways.isEmpty, "a policy without pathways was accepted")
        for (name, pathway) in policy.pathways {
            require(!name.isEmpty && pathway.name == name, "a pathway's name is empty or differs from its key")
            require(name.utf8.count <= 64, "a pathway name of \(name.utf8.count) bytes")
            require(pathway.defaultDuration <= pathway.maxDuration, "\(name): its default duration is over its maximum")
            require(pathway.maxDuration > .zero, "\(name): a maximum duration of \(pathway.maxDuration)")
        }
    } catch {
        require(!error.issues.isEmpty, "a refused policy names no problem")
        for issue in error.issues {
            if ProcessInfo.processInfo.environment["FUZZ_VERBOSE"] != nil { print(issue) }
            require(!issue.message.isEmpty && issue.line >= 0 && issue.column >= 0, "a problem without a message or place: \(issue)")
            require(issue.keyPath.isEmpty || issue.line >= 1, "a problem under \(issue.keyPath) names no line: \(issue)")
        }
    }
    return 0
}

/// The policy's folder, with the files a policy may name, made once per process.
enum PolicyFixture {
    static let folder: String = {
        let folder = scratchFolder("policy")
        do {
            try FileManager.default.createDirectory(atPath: folder + "/pam.d", withIntermediateDirectories: true)
            for name in ["c.pem", "k.pem", "t.pem", "a.pem"] {
                // Only the file checks run (owner, mode, size, UTF-8); keys are read when the gateway starts.
                guard
                    FileManager.default.createFile(
                        atPath: folder + "/" + name, contents: Data("fixture\n".utf8), attributes: [.posixPermissions: 0o600])
                else { throw CocoaError(.fileWriteUnknown) }
            }
            for name in ["breakglass", "other"] {
                try "auth required pam_deny.so\n".write(toFile: folder + "/pam.d/" + name, atomically: false, encoding: .utf8)
            }
        } catch {
            require(false, "cannot make the policy fixture under \(folder): \(error)")
        }
        return folder
    }()
}
