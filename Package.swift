// swift-tools-version: 6.0
import PackageDescription

// Targets in layer order: C system libraries, their Swift wrappers, the learning math,
// synthetic workloads, and the thin `eddy` executable.
let settings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Eddy",
    products: [
        .executable(name: "eddy", targets: ["eddy"]),
        .library(name: "Learning", targets: ["Learning"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // libzmq: no pkgConfig, Debian's libzmq.pc adds a flag SwiftPM rejects.
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"], swiftSettings: settings),
        // libsodium, for the CurveZMQ handshake and boxes of the ingest socket's own ZMTP.
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", providers: [.apt(["libsodium-dev"])]),
        // ZMTP 3.1 (NULL and CURVE) as a PULL socket speaks it, over raw bytes: ingest reads a
        // ZMQ_STREAM socket so that frame counts and sizes are checked before anything is held.
        // One thread owns each connection: no dynamic exclusivity check per byte in release.
        .target(
            name: "ZMTP", dependencies: ["CSodium"],
            swiftSettings: settings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .target(name: "LinearAlgebra", dependencies: ["COpenBLAS"], swiftSettings: settings),
        // Fused elementwise loops in C: the compiler vectorises their float reductions, sqrt and exp
        // (Swift does not expose the flags), with an AVX2 clone picked at load time.
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"])]
        ),
        .target(name: "Learning", dependencies: ["LinearAlgebra", "CKernels"], swiftSettings: settings),
        .target(name: "Workloads", dependencies: ["Learning"], swiftSettings: settings),
        // Log lines to templates (Drain), bounded and checkpointable. The miner is a class called
        // per line: as for Pipeline's signals, no dynamic exclusivity check per property access
        // (one thread at a time uses a miner, under its stream's lock).
        .target(
            name: "LogMining", dependencies: ["Learning", "CKernels"],
            swiftSettings: settings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // Generated from protocols/eddy/v1/eddy.proto by protocols/generate.sh; committed, not built here.
        .target(
            name: "EddyProtocol",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: settings
        ),
        // NAB scoring, corpus loading and SVG plots for `eddy eval` and `eddy replay --plot`.
        .target(name: "Evaluation", swiftSettings: settings),
        // Thread scheduling policy and names (GNU-only constants and calls Swift does not import).
        .target(name: "CEddySystem"),
        // The detection chain's signals are classes called on every sample: their stored properties
        // would cost a dynamic exclusivity check (a thread-local access set) per access. The stream's
        // lock already keeps them to one thread at a time.
        .target(
            name: "Pipeline",
            dependencies: [
                "Learning", "LinearAlgebra", "ZeroMQ", "ZMTP", "EddyProtocol", "CEddySystem", "CKernels", "CSodium", "LogMining",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: settings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "eddy",
            dependencies: [
                "Learning", "Workloads", "LinearAlgebra", "Pipeline", "ZeroMQ", "EddyProtocol", "Evaluation", "CEddySystem",
                "LogMining",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: settings
        ),
        // libFuzzer targets for admission, the configuration file and checkpoint restore
        // (scripts/fuzz.sh builds them with -sanitize=fuzzer; this build replays inputs).
        .executableTarget(
            name: "eddy-fuzz",
            dependencies: [
                "Learning", "Pipeline", "ZMTP", "EddyProtocol", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: settings
        ),
        .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra"], swiftSettings: settings),
        .testTarget(
            name: "LearningTests",
            dependencies: ["Learning", "LinearAlgebra", "Workloads"],
            swiftSettings: settings
        ),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation"], swiftSettings: settings),
        .testTarget(name: "LogMiningTests", dependencies: ["LogMining", "Learning"], exclude: ["Data"], swiftSettings: settings),
        .testTarget(
            name: "PipelineTests",
            dependencies: [
                "Pipeline", "Learning", "ZeroMQ", "ZMTP", "EddyProtocol", "Workloads", "CEddySystem",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: settings
        ),
    ]
)
