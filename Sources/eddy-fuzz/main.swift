// Fuzz targets for what the daemon reads from outside: a producer's bytes on the wire (ZMTP), a
// producer's message (admission, then the scoring chain on what is admitted), the configuration
// file, and a checkpointed stream.
//
//     EDDY_FUZZ_TARGET=admission eddy-fuzz CORPUS_DIR -max_total_time=60   # built by scripts/fuzz.sh
//     eddy-fuzz-target admission FILE...                                    # replays inputs (any build)
//
// Built with `-sanitize=fuzzer -D EDDY_FUZZ` (scripts/fuzz.sh) it is a libFuzzer binary; in the
// normal build it replays the files it is given, so a crashing input found once stays a test.
import EddyProtocol
import Foundation
import Learning
import Pipeline
import SwiftProtobuf
import ZMTP

#if canImport(Glibc)
import Glibc
#endif

/// Small streams, so that each input costs microseconds, not a model's worth of allocation.
func fuzzSettings() -> StreamConfiguration {
    var s = StreamConfiguration()
    s.bufferCapacity = 64
    s.batchSize = 8
    s.minimumBuffered = 8
    s.autoencoderHidden = [8, 4, 8]
    s.mocoEncoder = [8]
    s.mocoHead = [4]
    s.mocoQueue = 16
    s.warmupSamples = 16
    s.warmupSteps = 1
    s.discordHistory = 64
    s.discordWindows = [8]
    s.discordLevelWindows = [16]
    s.calibrationHorizon = 100
    s.idlePasses = 1  // so every seed's checkpoint has a learning-progress section
    return s
}

/// The daemon's admission of one message and, when admitted, scoring it (and a training step now
/// and then), as the ingest thread does. Streams persist across inputs, up to `maxStreams`.
final class AdmissionTarget {
    var configuration = DaemonConfiguration()
    var streams: [String: StreamPipeline] = [:]
    var inputs = 0, accepted = 0

    init() {
        configuration.maxStreams = 4
        configuration.maxDim = 64
        configuration.maxSamplesPerMessage = 256
        configuration.maxMessageBytes = 1 << 16
        configuration.streamDefaults = fuzzSettings()
    }

    /// Input layout: byte 0 is the frame count (mod 4); each frame is a length byte and that many
    /// bytes, except that frame 1 of two takes everything after frame 0.
    static func frames(_ data: [UInt8]) -> [[UInt8]] {
        guard let first = data.first else { return [] }
        let count = Int(first % 4)
        var frames: [[UInt8]] = [], i = 1
        for f in 0..<count {
            if f == count - 1 || i >= data.count {
                frames.append(Array(data[min(i, data.count)...]))
                i = data.count
            } else {
                let n = min(Int(data[i]), data.count - i - 1)
                frames.append(Array(data[(i + 1)..<(i + 1 + n)]))
                i += 1 + n
            }
        }
        return frames
    }

    func run(_ data: [UInt8]) {
        inputs += 1
        let outcome = Admission.check(Self.frames(data), configuration: configuration) { name, dim, log in
            if let s = self.streams[name] {
                return s.settings.log == log ? .success(s) : .failure(.init(code: .wrongKind, why: "kind"))
            }
            guard self.streams.count < self.configuration.maxStreams else {
                return .failure(.init(code: .tooManyStreams, why: "full"))
            }
            var declared = self.configuration.settings(for: name)
            declared.log = log
            let settings = declared.resolved(dim: dim)
            do { try settings.validate(name: name) } catch { return .failure(.init(code: .oversized, why: "\(error)")) }
            let s = StreamPipeline(name: name, settings: settings)
            self.streams[name] = s
            return .success(s)
        }
        if case .lines(let pipeline, let batch, let lines, _, _) = outcome {
            accepted += 1
            let scored = pipeline.scoreLines(
                lines, firstSequence: batch.sequence, timestamps: batch.timestampsNs.isEmpty ? nil : batch.timestampsNs)
            precondition(scored.count == lines.count && scored.templateIDs.count == lines.count, "one score per line")
            for i in 0..<scored.count {
                let score = scored.sample(i).score
                precondition(score.isFinite && score >= 0 && score <= 1, "score \(score) outside [0, 1]")
                if scored.alerts[i] { precondition(scored.logAlerts[i] != nil, "a log alert without its reason") }
            }
            if inputs % 8 == 0 { _ = pipeline.trainStep() }
            return
        }
        guard case .accepted(let pipeline, let batch, let values) = outcome else { return }
        accepted += 1
        let scored = values.withUnsafeBufferPointer {
            pipeline.score($0.baseAddress!, count: Int(batch.count), firstSequence: batch.sequence,
                           timestamps: batch.timestampsNs.isEmpty ? nil : batch.timestampsNs)
        }
        for i in 0..<scored.count {
            let score = scored.sample(i).score
            precondition(score.isFinite && score >= 0 && score <= 1, "score \(score) outside [0, 1]")
        }
        if inputs % 8 == 0 { _ = pipeline.trainStep() }
    }

    /// Valid messages to start from.
    static func seeds() -> [[UInt8]] {
        var out: [[UInt8]] = []
        for (name, dim, count) in [("pump-7", 3, 4), ("u", 1, 16), ("wide", 8, 2)] {
            var batch = Eddy_V1_SampleBatch()
            batch.stream = name
            batch.dim = UInt32(dim)
            batch.count = UInt32(count)
            batch.values = Wire.bytes((0..<(dim * count)).map { Float($0) * 0.5 })
            let body: [UInt8] = (try? batch.serializedBytes()) ?? []
            out.append([2, UInt8(name.utf8.count)] + Array(name.utf8) + body)
        }
        var lines = Eddy_V1_LineBatch()
        lines.stream = "app"
        lines.lines = ["sshd[24200]: Accepted password for root from 10.0.0.1 port 22", "took 12.5ms size=1234", "\u{FF}bad"]
            .map { Data($0.utf8) }
        let body: [UInt8] = (try? lines.serializedBytes()) ?? []
        out.append([2, 3] + Array("app".utf8) + body)
        return out
    }
}

enum ConfigurationTarget {
    static func run(_ data: [UInt8]) {
        guard let text = String(validating: data, as: UTF8.self) else { return }
        if let c = try? ConfigurationFile.parse(text) {
            // What parses is valid: validation agrees, and every declared stream can be built.
            precondition((try? c.validate()) != nil, "parsed but invalid")
        }
    }

    static func seeds() -> [[UInt8]] {
        [
            "ingest = tcp://127.0.0.1:7700\nmax_streams = 8\n[stream]\nthreshold = 0.99\nwindow_scales = 1, 8\n[stream.pump-7]\ndim = 3\n",
            "memory_budget = 64M\ncurve_secret_key = \"a b\"\ncurve_allowed_clients = c\n[stream]\nperiod = auto\nsignals = range, discord\n",
        ].map { Array($0.utf8) }
    }
}

/// A checkpointed stream's bytes, restored under the small settings (the checkpoint file's CRC
/// is checked before this; the fuzzer works past it).
enum CheckpointTarget {
    static func run(_ data: [UInt8]) {
        guard let s = try? StreamPipeline.restore(data, settings: fuzzSettings(), maxBytes: 64 << 20) else { return }
        // What restores is a working stream.
        let row = [Float](repeating: 0.5, count: s.sampleDimension)
        let scored = row.withUnsafeBufferPointer { s.score($0.baseAddress!, count: 1, firstSequence: 0, timestamps: nil) }
        precondition(scored.count == 1)
        _ = s.trainStep()
        _ = s.serialized()
    }

    /// Streams of 1 and 3 channels after 40 samples, and a univariate one after 700 (its period
    /// found: a period window's section; still warming: an early score's kept values and calibration).
    static func seeds() -> [[UInt8]] {
        [(1, 40), (3, 40), (1, 700)].map { dim, count in
            let s = StreamPipeline(name: "seed", settings: fuzzSettings().resolved(dim: dim))
            let values = (0..<(count * dim)).map { Float(sin(Double($0) * 2 * .pi / 25)) }
            _ = values.withUnsafeBufferPointer { s.score($0.baseAddress!, count: count, firstSequence: 0, timestamps: nil) }
            _ = s.trainStep()
            return s.serialized()
        }
    }
}

/// A producer connection's bytes as ingest's ZMTP reads them. Byte 0: bit 0 CURVE (a fixed server
/// key), bit 1 a valid NULL greeting and READY first (so inputs start at the frames); byte 1: the
/// size of the pieces the rest arrives in (1 to 256). Whatever arrives, the buffer's account
/// matches what the connection holds and stays within its limit, every message has at most two
/// frames within their limits, and closing gives everything back.
enum ZMTPTarget {
    static let limits = ZMTPConnection.Limits(frameBytes: [16, 1024])
    static let secret = [UInt8](repeating: 7, count: 32)

    static func run(_ data: [UInt8]) {
        guard data.count >= 2 else { return }
        let budget = ZMTPConnection.Budget(limit: 1500)
        let c = ZMTPConnection(
            security: data[0] & 1 == 1 ? .curve(secretKey: secret, allows: { _ in true }) : .null, limits: limits)
        var bytes = data[0] & 3 == 2 ? nullPrelude : []
        bytes += data[2...]
        let piece = Int(data[1]) + 1
        for start in stride(from: 0, to: bytes.count, by: piece) {
            bytes[start..<min(start + piece, bytes.count)].withUnsafeBufferPointer { chunk in
                c.feed(chunk, budget: budget) { event in
                    if case .message(let frames) = event {
                        precondition(frames.count <= 2 && frames.indices.allSatisfy { frames[$0].count <= limits.frameBytes[$0] })
                    }
                }
            }
            precondition(budget.used == c.held && c.held >= 0 && c.held <= budget.limit)
            if c.isClosed { break }
        }
        c.release(budget: budget)
        precondition(budget.used == 0)
    }

    /// A PUSH client's greeting and READY.
    static let nullPrelude: [UInt8] =
        [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1] + Array("NULL".utf8) + [UInt8](repeating: 0, count: 48)
        + [4, 26, 5] + Array("READY".utf8) + [11] + Array("Socket-Type".utf8) + [0, 0, 0, 4] + Array("PUSH".utf8)

    static func seeds() -> [[UInt8]] {
        let message: [UInt8] = [1, 3] + Array("abc".utf8) + [0, 4, 1, 2, 3, 4]
        let oversized: [UInt8] = [1, 1, 0x61, 2, 0, 0, 0, 0, 0, 0, 8, 0] + [UInt8](repeating: 9, count: 2048)
        let ping: [UInt8] = [4, 7, 4] + Array("PING".utf8) + [0, 10]
        return [[2, 255] + message + ping + message, [2, 3] + oversized + message, [0, 10] + nullPrelude + message, [1, 50]]
    }
}

let targetName = ProcessInfo.processInfo.environment["EDDY_FUZZ_TARGET"] ?? CommandLine.arguments.dropFirst().first ?? ""
let admission = AdmissionTarget()
let run: ([UInt8]) -> Void
let seeds: [[UInt8]]
switch targetName {
case "admission": (run, seeds) = (admission.run, AdmissionTarget.seeds())
case "config": (run, seeds) = (ConfigurationTarget.run, ConfigurationTarget.seeds())
case "checkpoint": (run, seeds) = (CheckpointTarget.run, CheckpointTarget.seeds())
case "zmtp": (run, seeds) = (ZMTPTarget.run, ZMTPTarget.seeds())
default:
    FileHandle.standardError.write(Data("eddy-fuzz: set EDDY_FUZZ_TARGET (or the first argument) to zmtp, admission, config or checkpoint\n".utf8))
    exit(2)
}

/// Seeds go into an empty corpus directory (EDDY_FUZZ_SEEDS).
if let directory = ProcessInfo.processInfo.environment["EDDY_FUZZ_SEEDS"],
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).isEmpty
{
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (i, seed) in seeds.enumerated() {
        FileManager.default.createFile(atPath: "\(directory)/seed-\(i)", contents: Data(seed))
    }
}

#if EDDY_FUZZ
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    run(count == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: count)))
    return 0
}
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: FuzzCallback) -> CInt
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
#else
// Replay: `eddy-fuzz TARGET FILE...` runs each file (a directory: each file in it) once, plus the seeds.
var files: [String] = []
for path in CommandLine.arguments.dropFirst(2) {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        files += ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
    } else {
        files.append(path)
    }
}
for seed in seeds { run(seed) }
for file in files {
    guard let data = FileManager.default.contents(atPath: file) else { continue }
    run([UInt8](data))
}
print("eddy-fuzz \(targetName): \(seeds.count) seeds and \(files.count) inputs ran"
    + (targetName == "admission" ? ", \(admission.accepted) admitted and scored" : ""))
#endif
