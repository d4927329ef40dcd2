// swift-tools-version:6.2
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .treatAllWarnings(as: .error),
]

let testSettings: [SwiftSetting] = [
    .treatAllWarnings(as: .error)
]

let package = Package(
    name: "breakglass",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "breakglass", targets: ["breakglass"]),
        .library(name: "BreakGlassAPI", targets: ["BreakGlassAPI"]),
        .library(name: "BreakGlassCore", targets: ["BreakGlassCore"]),
        .library(name: "BreakGlassGateway", targets: ["BreakGlassGateway"]),
        .library(name: "BreakGlassHealth", targets: ["BreakGlassHealth"]),
        // For the fuzz targets in Tests/Fuzz, a package of their own.
        .library(name: "BreakGlassConfig", targets: ["BreakGlassConfig"]),
        .library(name: "BreakGlassTokens", targets: ["BreakGlassTokens"]),
        .library(name: "BreakGlassAuditFormat", targets: ["BreakGlassAuditFormat"]),
        .library(name: "BreakGlassAuditLog", targets: ["BreakGlassAuditLog"]),
        .library(name: "BreakGlassPAM", targets: ["BreakGlassPAM"]),
        .library(name: "BreakGlassProxy", targets: ["BreakGlassProxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CPAM",
            pkgConfig: "pam",
            providers: [.apt(["libpam0g-dev"])]
        ),
        .target(name: "CBreakGlassCRC32C"),
        // SHA-256 for the Merkle tree through libcrypto's public API (OpenSSL, libssl-dev).
        .target(name: "CBreakGlassSHA256", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "BreakGlassAPI", swiftSettings: strictSettings),
        .target(
            name: "BreakGlassCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassConfig",
            dependencies: [
                "BreakGlassCore",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassPAM",
            dependencies: [
                "BreakGlassCore",
                "CPAM",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassTokens",
            dependencies: [
                "BreakGlassCore",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassCerts",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassAuditFormat",
            dependencies: [
                "BreakGlassCore",
                "CBreakGlassCRC32C",
                "CBreakGlassSHA256",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassAuditLog",
            dependencies: [
                "BreakGlassCore",
                "BreakGlassAuditFormat",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassProxy",
            dependencies: [
                "BreakGlassAPI",
                "BreakGlassCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassHealth",
            dependencies: [
                "BreakGlassAPI",
                "BreakGlassCore",
                "BreakGlassConfig",
                "BreakGlassTokens",
                "BreakGlassAuditFormat",
                "BreakGlassAuditLog",
                "BreakGlassClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassGateway",
            dependencies: [
                "BreakGlassAPI",
                "BreakGlassProxy",
                "BreakGlassHealth",
                "BreakGlassCore",
                "BreakGlassConfig",
                "BreakGlassPAM",
                "BreakGlassTokens",
                "BreakGlassAuditFormat",
                "BreakGlassAuditLog",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BreakGlassClient",
            dependencies: [
                "BreakGlassAPI",
                "BreakGlassCore",
                "BreakGlassAuditFormat",
                "BreakGlassProxy",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "breakglass",
            dependencies: [
                "BreakGlassAPI",
                "BreakGlassCore",
                "BreakGlassConfig",
                "BreakGlassTokens",
                "BreakGlassCerts",
                "BreakGlassGateway",
                "BreakGlassHealth",
                "BreakGlassClient",
                "BreakGlassAuditFormat",
                "BreakGlassAuditLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings,
            plugins: ["BuildCommitPlugin"]
        ),
        // Writes the git commit `breakglass --version` prints (`unknown` outside a checkout).
        .plugin(name: "BuildCommitPlugin", capability: .buildTool(), path: "Sources/BuildCommitPlugin"),
        .target(
            name: "BreakGlassTestSupport",
            dependencies: [
                "BreakGlassCore",
                "BreakGlassCerts",
                "BreakGlassConfig",
                "BreakGlassGateway",
                "BreakGlassTokens",
                "BreakGlassAuditFormat",
                "BreakGlassAuditLog",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/BreakGlassTestSupport",
            swiftSettings: testSettings
        ),
        .testTarget(
            name: "BreakGlassTests",
            dependencies: [
                "BreakGlassCore",
                "BreakGlassConfig",
                "BreakGlassPAM",
                "BreakGlassTokens",
                "BreakGlassCerts",
                "BreakGlassGateway",
                "BreakGlassHealth",
                "BreakGlassProxy",
                "BreakGlassClient",
                "BreakGlassTestSupport",
                "BreakGlassAuditFormat",
                "BreakGlassAuditLog",
                "breakglass",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: testSettings
        ),
    ]
)
