// swift-tools-version:6.2
// libFuzzer targets for breakglass's parsers. Built apart from the main package because every target
// is compiled with `-sanitize=fuzzer,address -parse-as-library` (libFuzzer supplies `main`):
//   Scripts/fuzz [TARGET] [SECONDS]
import PackageDescription

let fuzzTargets = [
    "FuzzPolicy", "FuzzToken", "FuzzGrantBody", "FuzzProxyTarget", "FuzzAuditSegment", "FuzzCheckpoint", "FuzzPAMConversation",
]

let package = Package(
    name: "breakglass-fuzz",
    platforms: [.macOS(.v15)],
    products: fuzzTargets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [
        .package(name: "breakglass", path: "../.."),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .target(
            name: "FuzzSupport",
            dependencies: ["CFuzzDriver", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "FuzzPolicy",
            dependencies: [
                "FuzzSupport",
                .product(name: "BreakGlassCore", package: "breakglass"),
                .product(name: "BreakGlassConfig", package: "breakglass"),
            ]
        ),
        .executableTarget(
            name: "FuzzToken",
            dependencies: [
                "FuzzSupport",
                .product(name: "BreakGlassCore", package: "breakglass"),
                .product(name: "BreakGlassTokens", package: "breakglass"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "FuzzGrantBody",
            dependencies: [
                "FuzzSupport",
                .product(name: "BreakGlassCore", package: "breakglass"),
                .product(name: "BreakGlassGateway", package: "breakglass"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzProxyTarget",
            dependencies: ["FuzzSupport", .product(name: "BreakGlassProxy", package: "breakglass")]
        ),
        .executableTarget(
            name: "FuzzAuditSegment",
            dependencies: [
                "FuzzSupport",
                .product(name: "BreakGlassCore", package: "breakglass"),
                .product(name: "BreakGlassAuditFormat", package: "breakglass"),
                .product(name: "BreakGlassAuditLog", package: "breakglass"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "FuzzCheckpoint",
            dependencies: [
                "FuzzSupport",
                .product(name: "BreakGlassAuditFormat", package: "breakglass"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "FuzzPAMConversation",
            dependencies: ["FuzzSupport", .product(name: "BreakGlassPAM", package: "breakglass")]
        ),
    ]
)
