import BreakGlassConfig
import FuzzSupport

/// Policy text through the loader and validator: it parses, or every problem names a line and says
/// what is wrong. Never a crash, a hang or an unbounded allocation.
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
        let policy = try PolicyLoader.parse(text: text, file: "fuzz.yaml", baseDirectory: "/nonexistent-fuzz")
        for (name, pathway) in policy.pathways {
            require(!name.isEmpty && pathway.name == name, "a pathway's name is empty or differs from its key")
        }
    } catch {
        require(!error.issues.isEmpty, "a refused policy names no problem")
        for issue in error.issues {
            require(!issue.message.isEmpty && issue.line >= 0 && issue.column >= 0, "a problem without a message or place: \(issue)")
        }
    }
    return 0
}
