import Foundation
import Learning

#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints of every stream's whole training state in a data directory.
///
/// A checkpoint is one file, `checkpoint-<sequence>.eddy`, written atomically: to a temporary file,
/// fsync, rename over the final name, fsync the directory. Its content is sealed with a CRC-32. On
/// start the newest file that reads back whole is used; a damaged one is skipped (and reported) in
/// favour of the one before. The newest `kept` files are kept.
public struct CheckpointStore: Sendable {
    public let directory: String
    public let kept: Int
    static let kind = "eddy.checkpoint"
    static let formatVersion: UInt32 = 1

    public init(directory: String, kept: Int = 3) {
        self.directory = directory
        self.kept = max(1, kept)
    }

    /// Checkpoint files, oldest first, with their sequence numbers.
    func files() -> [(sequence: UInt64, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> (UInt64, String)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".eddy") else { return nil }
            let digits = name.dropFirst("checkpoint-".count).dropLast(".eddy".count)
            guard let n = UInt64(digits) else { return nil }
            return (n, directory + "/" + name)
        }.sorted { $0.0 < $1.0 }
    }

    /// Writes all `streams` as the next checkpoint and prunes old ones. Returns its path.
    @discardableResult
    public func write(_ streams: [StreamPipeline], now: Int64) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var w = StateWriter()
        w.write(Self.kind); w.write(Self.formatVersion); w.write(now)
        w.write(UInt32(streams.count))
        for s in streams { w.write(blob: s.serialized()) }
        w.seal()
        let sequence = (files().last?.sequence ?? 0) + 1
        let path = directory + "/" + String(format: "checkpoint-%020llu.eddy", sequence)
        try Self.writeAtomically(w.bytes, to: path, directory: directory)
        for old in files().dropLast(kept) { unlink(old.path) }
        return path
    }

    /// The streams of the newest checkpoint that reads back whole, or nil if there is none.
    ///
    /// - Parameters:
    ///   - settings: the configuration each stream name gets now.
    ///   - skipped: called with each damaged checkpoint's path and the reason.
    public func loadNewest(
        settings: (String) -> StreamConfiguration, skipped: (String, Error) -> Void
    ) -> (path: String, streams: [StreamPipeline])? {
        for file in files().reversed() {
            do {
                guard let data = FileManager.default.contents(atPath: file.path) else {
                    throw StateError.truncated
                }
                var r = try StateReader(sealed: [UInt8](data))
                guard try r.read(String.self) == Self.kind else { throw StateError.wrongKind(expected: Self.kind) }
                let version = try r.read(UInt32.self)
                guard version == Self.formatVersion else { throw StateError.unsupportedVersion(version) }
                _ = try r.read(Int64.self)
                let count = Int(try r.read(UInt32.self))
                var streams: [StreamPipeline] = []
                for _ in 0..<count {
                    let blob = try r.readBlob()
                    var peek = StateReader(blob)
                    _ = try peek.read(String.self); _ = try peek.read(UInt32.self)
                    let name = try peek.read(String.self)
                    // A stream whose settings changed shape since (buffer size, layer widths) starts
                    // afresh; the others keep what they learned.
                    do {
                        streams.append(try StreamPipeline.restore(blob, settings: settings(name)))
                    } catch {
                        skipped("\(file.path) stream \(name)", error)
                    }
                }
                return (file.path, streams)
            } catch {
                skipped(file.path, error)
            }
        }
        return nil
    }

    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CheckpointError.system("open \(temporary)", errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                unlink(temporary)
                throw CheckpointError.system("write \(temporary)", e)
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let e = errno
            close(fd)
            unlink(temporary)
            throw CheckpointError.system("fsync \(temporary)", e)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw CheckpointError.system("rename \(temporary)", e)
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

public enum CheckpointError: Error, CustomStringConvertible {
    case system(String, Int32)

    public var description: String {
        switch self {
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        }
    }
}
