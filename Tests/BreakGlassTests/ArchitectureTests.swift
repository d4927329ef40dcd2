import BreakGlassTestSupport
import Foundation
import Testing

/// ARCHITECTURE.md's table of allowed imports is the rule: `Package.swift` declares exactly those
/// dependencies between the project's targets, and no file under `Sources/` imports a project target
/// its own target may not.
@Suite struct ArchitectureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Target → the project targets it may import, from the fenced `imports` block of ARCHITECTURE.md.
    static func allowed() throws -> [String: Set<String>] {
        let text = try String(contentsOfFile: root + "/ARCHITECTURE.md", encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(of: "```imports"),
            let end = lines[(start + 1)...].firstIndex(where: { $0.hasPrefix("```") })
        else { throw TestSupportError("ARCHITECTURE.md has no ```imports block") }
        var allowed: [String: Set<String>] = [:]
        for line in lines[(start + 1)..<end] where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = line.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw TestSupportError("not TARGET: IMPORTS: \(line)") }
            let target = parts[0].trimmingCharacters(in: .whitespaces)
            guard allowed[target] == nil else { throw TestSupportError("\(target) is listed twice") }
            allowed[target] = Set(parts[1].split(separator: " ").map(String.init))
        }
        return allowed
    }

    /// Target → the project targets it depends on, from `swift package dump-package`.
    static func declared() async throws -> [String: Set<String>] {
        guard let swift = ProcessRunner.which("swift") else { throw TestSupportError("swift is not on PATH") }
        // Its own scratch folder: `swift test` holds the lock on `.build` while the tests run.
        let scratch = NSTemporaryDirectory() + "/breakglass-dump-package-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let result = try await ProcessRunner.run(
            swift, ["package", "--package-path", root, "--scratch-path", scratch, "dump-package"], timeout: .seconds(120))
        guard result.status == 0, let data = result.stdout.data(using: .utf8),
            let package = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let targets = package["targets"] as? [[String: Any]]
        else { throw TestSupportError("swift package dump-package failed: \(result.stderr)") }
        let names = Set(targets.compactMap { $0["name"] as? String })
        var declared: [String: Set<String>] = [:]
        for target in targets where target["type"] as? String != "test" {
            guard let name = target["name"] as? String else { continue }
            var dependencies = Set<String>()
            for dependency in target["dependencies"] as? [[String: Any]] ?? [] {
                // {"byName": ["X", null]}, {"target": ["X", null]} or {"product": ["X", "package", …]}
                for (kind, value) in dependency where kind != "product" {
                    if let first = (value as? [Any])?.first as? String, names.contains(first) { dependencies.insert(first) }
                }
            }
            declared[name] = dependencies
        }
        return declared
    }

    @Test func packageDependenciesAreTheAllowedImports() async throws {
        let allowed = try Self.allowed()
        let declared = try await Self.declared()
        #expect(Set(allowed.keys) == Set(declared.keys), "targets in ARCHITECTURE.md vs Package.swift")
        for (target, dependencies) in declared.sorted(by: { $0.key < $1.key }) {
            #expect(dependencies == allowed[target] ?? [], "\(target): Package.swift has \(dependencies.sorted())")
        }
    }

    /// The project module an import statement names: `import X`, `@testable import X`,
    /// `public import X`, `import struct X.Y`, `@_spi(S) internal import X`; nil for anything else.
    static func importedModule(_ statement: Substring) -> String? {
        var words = statement.split(whereSeparator: { $0 == " " || $0 == "\t" })[...]
        while let first = words.first, first.hasPrefix("@") { words = words.dropFirst() }
        if let first = words.first, ["public", "package", "internal", "fileprivate", "private"].contains(first) {
            words = words.dropFirst()
        }
        guard words.first == "import" else { return nil }
        words = words.dropFirst()
        if let kind = words.first, ["struct", "class", "enum", "protocol", "typealias", "func", "let", "var"].contains(kind) {
            words = words.dropFirst()
        }
        return words.first.map { String($0.split(separator: ".").first ?? $0) }
    }

    @Test func sourcesImportOnlyWhatTheirTargetMay() throws {
        let allowed = try Self.allowed()
        let project = Set(allowed.keys)
        let folders =
            try FileManager.default.contentsOfDirectory(atPath: Self.root + "/Sources").sorted().map { ($0, "Sources/" + $0) }
            + [("BreakGlassTestSupport", "Tests/BreakGlassTestSupport")]
        for (target, folder) in folders {
            guard let files = FileManager.default.enumerator(atPath: Self.root + "/" + folder) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOfFile: Self.root + "/" + folder + "/" + file, encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? line
                    for statement in code.split(separator: ";") {
                        guard let module = Self.importedModule(statement), project.contains(module) else { continue }
                        #expect(allowed[target]?.contains(module) == true, "\(folder)/\(file) imports \(module)")
                    }
                }
            }
        }
    }

    @Test func everySpellingOfAnImportIsSeen() {
        for statement in [
            "import BreakGlassCore", "@testable import BreakGlassCore", "public import BreakGlassCore", "\timport BreakGlassCore",
            "import struct BreakGlassCore.Grant", "@_spi(X) internal import BreakGlassCore",
        ] {
            #expect(Self.importedModule(Substring(statement)) == "BreakGlassCore", "\(statement)")
        }
        #expect(Self.importedModule("let important = 1") == nil)
    }
}
