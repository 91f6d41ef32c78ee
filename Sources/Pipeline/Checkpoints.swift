import Foundation
import Learning

#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints of every stream's whole training state in a data directory.
///
/// A checkpoint is one file, `checkpoint-<sequence>.eddy`, written atomically: to a temporary file,
/// fsync, rename over the final name, fsync the directory. Its content is sealed with a CRC-32. On
/// start, temporary files an interrupted write left are removed, and the newest file that reads back
/// whole is used: a damaged one is moved aside (renamed `….eddy.damaged`, no longer counted among the
/// `kept`) and reported, in favour of the one before. A stream whose saved state no longer fits its
/// settings (a changed window, buffer or layer width) starts afresh, and its saved state is written
/// aside to `set-aside-<checkpoint>-<stream>.stream`, not deleted. The newest `kept` files are kept.
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
    public func files() -> [(sequence: UInt64, path: String)] {
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

    /// Removes the temporary files of writes that never finished (a kill during a checkpoint);
    /// returns their paths.
    @discardableResult
    public func removeStaleTemporaries() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let stale = names.filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".eddy.tmp") }.map { directory + "/" + $0 }
        for path in stale { unlink(path) }
        return stale
    }

    /// The streams of the newest checkpoint that reads back whole, or nil if there is none.
    ///
    /// - Parameters:
    ///   - settings: the configuration each stream name gets now.
    ///   - skipped: called with each damaged checkpoint's path, the reason, and where it was moved.
    ///   - setAside: called with each stream that starts afresh, the reason, and where its saved state went.
    public func loadNewest(
        settings: (String) -> StreamConfiguration, skipped: (String, Error, String) -> Void,
        setAside: (String, Error, String) -> Void = { _, _, _ in }
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
                        let aside = directory + "/set-aside-\(file.sequence)-\(name).stream"
                        try? Self.writeAtomically(blob, to: aside, directory: directory)
                        setAside(name, error, aside)
                    }
                }
                return (file.path, streams)
            } catch {
                let aside = file.path + ".damaged"
                // If it cannot be moved it stays where it is (and is tried, and skipped, again).
                skipped(file.path, error, rename(file.path, aside) == 0 ? aside : file.path)
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
