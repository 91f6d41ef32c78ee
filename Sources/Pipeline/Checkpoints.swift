import CSodium
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
    /// A saved stream whose shape would take more than this is not restored (set aside instead).
    public let streamBytesLimit: Int
    static let kind = "eddy.checkpoint"
    static let formatVersion: UInt32 = 1

    public init(directory: String, kept: Int = 3, streamBytesLimit: Int = Int.max) {
        self.directory = directory
        self.kept = max(1, kept)
        self.streamBytesLimit = streamBytesLimit
    }

    /// Makes the directory (and its parents, owner-only) if it is not there, and checks that a file
    /// can be written in it: a daemon that cannot keep its state says so as it starts, not at its
    /// first checkpoint (from review: `--data-dir /proc/nope` served, and lost everything at the stop).
    public func prepareDirectory() throws {
        try Self.makeDirectories(directory)
        let probe = directory + "/.eddy-write-check-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CheckpointError.system("write a file in the data directory \(directory)", errno) }
        var byte: UInt8 = 0
        let wrote = Glibc.write(fd, &byte, 1)
        let code = errno
        close(fd)
        unlink(probe)
        if wrote != 1 { throw CheckpointError.system("write a file in the data directory \(directory)", code) }
    }

    /// Takes the data directory for this daemon: an exclusive `flock` on `eddy.lock` in it (the
    /// holder's pid written there), held while the returned descriptor is open. Two daemons on one
    /// directory would number their checkpoints over each other's and the next start would restore
    /// the other's streams (from review: a second daemon, started to try a configuration, took the
    /// live one's directory and its state). Another process holding it is `CheckpointError.inUse`.
    public func lock() throws -> Int32 {
        let path = directory + "/eddy.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CheckpointError.system("open \(path)", errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var holder = [UInt8](repeating: 0, count: 24)
            let n = pread(fd, &holder, holder.count, 0)
            close(fd)
            guard code == EWOULDBLOCK else { throw CheckpointError.system("lock \(path)", code) }
            let pid = String(decoding: holder.prefix(max(0, n)).filter { (0x30...0x39).contains($0) }, as: UTF8.self)
            throw CheckpointError.inUse(directory, pid.isEmpty ? "?" : pid)
        }
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pwrite(fd, text, text.count, 0) != text.count {
            let code = errno
            close(fd)
            throw CheckpointError.system("write \(path)", code)
        }
        return fd
    }

    /// `path` and the directories above it that are not there; `directory` names the data
    /// directory in an error.
    static func makeDirectories(_ path: String, for directory: String? = nil) throws {
        let what = "create the data directory \(directory ?? path)"
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw CheckpointError.system("\(what) (\(path) is a file)", ENOTDIR) }
            return
        }
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !parent.isEmpty { try makeDirectories(parent, for: directory ?? path) }
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw CheckpointError.system(what, errno) }
    }

    /// Checkpoint files, oldest first, with their sequence numbers; none if the directory does not
    /// exist yet. A directory that cannot be listed is an error, not an empty one: a daemon would
    /// start afresh without a word, and its next checkpoint take number 1 over an older file.
    public func files() throws -> [(sequence: UInt64, path: String)] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw CheckpointError.system("list \(directory)", errno)
        }
        closedir(dir)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        return names.compactMap { name -> (UInt64, String)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".eddy") else { return nil }
            let digits = name.dropFirst("checkpoint-".count).dropLast(".eddy".count)
            guard let n = UInt64(digits) else { return nil }
            return (n, directory + "/" + name)
        }.sorted { $0.0 < $1.0 }
    }

    /// Writes all `streams` as the next checkpoint and prunes old ones. Returns its path.
    @discardableResult
    /// `progress` is called after each stream is serialized (the trainer's health mark).
    public func write(_ streams: [StreamPipeline], now: Int64, progress: () -> Void = {}) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var w = StateWriter()
        w.write(Self.kind); w.write(Self.formatVersion); w.write(now)
        w.write(UInt32(streams.count))
        for s in streams {
            w.write(blob: s.serialized())
            progress()
        }
        w.seal()
        let listed = try files()
        // Past the numbers of damaged files too: the next checkpoint is never named like one.
        let last = max(listed.last?.sequence ?? 0, try damagedSequences().max() ?? 0)
        // Only a file named by hand reaches the end of the numbers.
        guard last < UInt64.max else { throw CheckpointError.system("no checkpoint number after \(last) in \(directory)", EOVERFLOW) }
        let sequence = last + 1
        let path = directory + "/" + String(format: "checkpoint-%020llu.eddy", sequence)
        try Self.writeAtomically(w.bytes, to: path, directory: directory, progress: progress)
        // A file that cannot be read (its owner or mode changed, an I/O error) was skipped at start
        // and is left for the operator: not counted among the kept, never pruned.
        for old in (listed + [(sequence, path)]).filter({ Self.readable($0.path) }).dropLast(kept) { unlink(old.path) }
        return path
    }

    /// The sequence numbers of checkpoints moved aside as damaged (`checkpoint-N.eddy.damaged`).
    func damagedSequences() throws -> [UInt64] {
        try FileManager.default.contentsOfDirectory(atPath: directory).compactMap { name in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".eddy.damaged") else { return nil }
            return UInt64(name.dropFirst("checkpoint-".count).dropLast(".eddy.damaged".count))
        }
    }

    /// A regular file this process can read.
    static func readable(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// Removes the temporary files of writes that never finished (a kill during a checkpoint);
    /// returns their paths.
    @discardableResult
    public func removeStaleTemporaries() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        // Every file `writeAtomically` writes: checkpoints, expired and set-aside states.
        let stale = names.filter { name in
            name.hasSuffix(".tmp") && ["checkpoint-", "expired-", "set-aside-", "published-versions"].contains { name.hasPrefix($0) }
        }.map { directory + "/" + $0 }
        for path in stale { unlink(path) }
        return stale
    }

    /// Bytes written between two calls of a write's `progress`.
    static let writeChunk = 8 << 20

    /// The streams of the newest checkpoint that reads back whole, or nil if there is none.
    ///
    /// - Parameters:
    ///   - settings: the configuration each stream name gets now.
    ///   - skipped: called with each damaged checkpoint's path, the reason, and where it was moved.
    ///   - setAside: called with each stream that starts afresh, the reason, and where its saved state went.
    ///   - nameProblem: why a saved stream's name can no longer name a stream, if it cannot (one saved
    ///     under a larger `max_stream_name_bytes` than today's bound): that stream is set aside too.
    public func loadNewest(
        settings: (String) -> StreamConfiguration, skipped: (String, Error, String) -> Void,
        setAside: (String, Error, String) -> Void = { _, _, _ in }, nameProblem: (String) -> String? = { _ in nil }
    ) throws -> (path: String, streams: [StreamPipeline])? {
        for file in try files().reversed() {
            do {
                guard let data = FileManager.default.contents(atPath: file.path) else {
                    throw CheckpointError.system("read \(file.path)", errno)
                }
                var r = try StateReader(sealed: [UInt8](data))
                guard try r.read(String.self) == Self.kind else { throw StateError.wrongKind(expected: Self.kind) }
                let version = try r.read(UInt32.self)
                // A newer daemon's file (a version rolled back) is not damage: moved aside, its streams
                // would be lost to a daemon that starts empty (from review). The start stops instead.
                guard version <= Self.formatVersion else { throw CheckpointError.newer(file.path, version, Self.formatVersion) }
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
                        if let why = nameProblem(name) { throw StateError.invalid(why) }
                        streams.append(try StreamPipeline.restore(blob, settings: settings(name), maxBytes: streamBytesLimit))
                    } catch {
                        // Kept aside, or the start fails: a state said to be kept that was not
                        // would go with its checkpoint at the next rotations.
                        let head = "set-aside-\(file.sequence)-"
                        let aside = streamPath(head, name)
                        do {
                            try Self.writeAtomically(blob, to: aside, directory: directory)
                        } catch let failure {
                            throw CheckpointError.keepingAside(name, aside, "\(failure)")
                        }
                        setAside(name, error, aside)
                    }
                }
                return (file.path, streams)
            } catch let error as CheckpointError {
                if case .keepingAside = error { throw error }
                if case .newer = error { throw error }
                // Unreadable (permissions, an I/O error) is not damaged: it stays as it is.
                skipped(file.path, error, file.path)
            } catch {
                let aside = file.path + ".damaged"
                // If it cannot be moved it stays where it is (and is tried, and skipped, again).
                skipped(file.path, error, rename(file.path, aside) == 0 ? aside : file.path)
            }
        }
        return nil
    }

    // MARK: Expired streams

    /// Where a stream that expired keeps its state until its name comes back.
    func expiredPath(_ name: String) -> String {
        streamPath("expired-", name)
    }

    // MARK: Stream names in file names

    /// The file `<head><name>.stream` in the store, the name fitted to what NAME_MAX leaves after
    /// the head and `.stream.tmp` (`fileComponent`).
    func streamPath(_ head: String, _ name: String) -> String {
        directory + "/" + head + Self.fileComponent(name, budget: Self.nameMax - head.utf8.count - 11) + ".stream"
    }

    /// The longest file name (NAME_MAX on Linux file systems).
    static let nameMax = 255

    /// A stream's name as it goes into a file name, in at most `budget` bytes (what NAME_MAX leaves
    /// after the file's prefix and `.stream.tmp`): the name itself when it fits, as every file was
    /// named before, otherwise as much of it as fits (cut between scalars) with `~` and 32 hex digits
    /// of its BLAKE2b-128 after. Before, a name of 237 to 256 bytes could not expire, or be set
    /// aside, without a file name too long to open (from review). A name that itself ends like that
    /// (`~` and 32 lowercase hex digits) takes the second form too, so no name's first form is
    /// another's second.
    static func fileComponent(_ name: String, budget: Int) -> String {
        let bytes = Array(name.utf8)
        let hashedLength = 33
        func looksHashed() -> Bool {
            bytes.count >= hashedLength && bytes[bytes.count - hashedLength] == UInt8(ascii: "~")
                && bytes.suffix(hashedLength - 1).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
        if bytes.count <= budget && !looksHashed() { return name }
        _ = sodiumReady
        var digest = [UInt8](repeating: 0, count: 16)
        _ = crypto_generichash(&digest, digest.count, bytes, UInt64(bytes.count), nil, 0)
        var head = ""
        var used = 0
        for scalar in name.unicodeScalars {
            let width = String(scalar).utf8.count
            if used + width > budget - hashedLength { break }
            head.unicodeScalars.append(scalar)
            used += width
        }
        return head + "~" + digest.map { String($0, radix: 16).leftPadded(2) }.joined()
    }

    private static let sodiumReady: Bool = sodium_init() >= 0

    /// An expired stream's file: this kind and version, then the stream's state, sealed with a CRC-32
    /// as checkpoints are. (Files written before the seal hold the bare state; they still restore.)
    static let expiredKind = "eddy.expired"
    static let expiredVersion: UInt32 = 1

    /// Writes an expiring stream's state aside, durably (see `writeAtomically`), and returns its path.
    /// `pruneExpired` then keeps the number of such files bounded.
    @discardableResult
    public func writeExpired(_ stream: StreamPipeline, progress: () -> Void = {}) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var w = StateWriter()
        w.write(Self.expiredKind); w.write(Self.expiredVersion)
        w.write(blob: stream.serialized())
        w.seal()
        let path = expiredPath(stream.name)
        try Self.writeAtomically(w.bytes, to: path, directory: directory, progress: progress)
        return path
    }

    /// Keeps at most `keep` expired streams' files, the newest (the files in `sparing`, those of
    /// streams that came back, are neither counted nor removed).
    public func pruneExpired(keep: Int, sparing: Set<String> = []) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let expired = names.filter { $0.hasPrefix("expired-") && $0.hasSuffix(".stream") }.map { directory + "/" + $0 }
            .filter { !sparing.contains($0) }
        guard expired.count > keep else { return }
        func modified(_ path: String) -> Double {
            var info = stat()
            return stat(path, &info) == 0 ? Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) * 1e-9 : 0
        }
        for old in expired.sorted(by: { modified($0) < modified($1) }).prefix(expired.count - keep) { unlink(old) }
    }

    /// Whether a state of an expired stream of this name is kept (a file to read: `takeExpired`),
    /// under today's file name (a file under the name it had before the hashed form takes it now,
    /// so that the daemon's pruning, which spares the path it reads, spares that file too).
    public func hasExpired(_ name: String) -> Bool {
        adoptLegacyName(name)
        return access(expiredPath(name), F_OK) == 0
    }

    /// A name of at most 236 bytes shaped like the hashed form was kept under itself before the
    /// hashed form came: such a file takes today's name (from review), so nothing is orphaned.
    func adoptLegacyName(_ name: String) {
        let path = expiredPath(name), legacy = directory + "/expired-\(name).stream"
        if legacy != path && access(path, F_OK) != 0 && access(legacy, F_OK) == 0 { rename(legacy, path) }
    }

    /// The state of an expired stream of this name, if one was kept, restored under `settings`. A
    /// state that no longer fits its settings, is damaged (its CRC does not match), or is another
    /// stream's (a file copied or renamed), is moved aside (`setAsideExpired`; it was deleted, from
    /// review) and `setAside` gets where it went; it is not tried again. One that restores is removed
    /// only if `remove` (the daemon keeps it until a checkpoint holds the stream).
    public func takeExpired(
        _ name: String, settings: StreamConfiguration, remove: Bool = true, setAside: (String?) -> Void = { _ in }
    ) -> Result<StreamPipeline, Error>? {
        let path = expiredPath(name)
        adoptLegacyName(name)
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let restored = Result {
            let bytes = [UInt8](data)
            var state = bytes
            var peek = StateReader(bytes)
            if (try? peek.read(String.self)) == Self.expiredKind {
                var r = try StateReader(sealed: bytes)
                _ = try r.read(String.self)
                let version = try r.read(UInt32.self)
                guard version == Self.expiredVersion else { throw StateError.unsupportedVersion(version) }
                state = try r.readBlob()
            }
            let s = try StreamPipeline.restore(state, settings: settings, maxBytes: streamBytesLimit)
            guard s.name == name else { throw StateError.invalid("the state kept for stream \(name) is stream \(s.name)'s") }
            return s
        }
        if (try? restored.get()) == nil {
            setAside(setAsideExpired(name))
        } else if remove {
            unlink(path)
        }
        return restored
    }

    /// Moves the expired state kept for `name` to `set-aside-expired-<nanoseconds>-<name>.stream`, a
    /// name no other file takes, where nothing reads, rotates or prunes it: a state that cannot come
    /// back as its stream now (another dim or kind, other settings, damaged) is kept for whoever
    /// wants it. Returns the new path, or nil if the file could not be moved (it is then removed, so
    /// it is not tried again for a stream it is not).
    @discardableResult
    public func setAsideExpired(_ name: String) -> String? {
        let path = expiredPath(name)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let head = "set-aside-expired-\(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec))-"
        let aside = streamPath(head, name)
        // No fsync of the directory (this runs on the ingest thread): a crash that undoes the rename
        // leaves the state where it was, to be moved aside again when its name comes back.
        if rename(path, aside) == 0 { return aside }
        unlink(path)
        return nil
    }

    // MARK: Versions published

    /// The file that holds the highest model versions published per stream.
    var publishedPath: String { directory + "/published-versions" }
    static let publishedHeader = "eddy.published-versions 1"

    /// The highest versions published per stream, as `writePublished` left them (none if there is no
    /// file), and the lines that could not be read (a damaged line is skipped, not fatal: it only
    /// says how far versions must go on).
    public func readPublished() -> (versions: [String: (autoencoder: UInt64, moco: UInt64)], unreadable: Int) {
        guard let data = FileManager.default.contents(atPath: publishedPath) else { return ([:], 0) }
        // Split as bytes: a name may begin with a combining mark, which as characters joins the space.
        let lines = Array(data).split(separator: 0x0A, omittingEmptySubsequences: true)
        guard let first = lines.first, String(decoding: first, as: UTF8.self) == Self.publishedHeader else { return ([:], lines.count) }
        var versions: [String: (autoencoder: UInt64, moco: UInt64)] = [:]
        var unreadable = 0
        for line in lines.dropFirst() {
            // "<autoencoder> <moco> <stream>": a name has no control character, so it ends the line.
            let fields = line.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
            func number(_ f: ArraySlice<UInt8>) -> UInt64? { UInt64(String(decoding: f, as: UTF8.self)) }
            guard fields.count == 3, let ae = number(fields[0]), let moco = number(fields[1]), !fields[2].isEmpty else {
                unreadable += 1
                continue
            }
            versions[String(decoding: fields[2], as: UTF8.self)] = (ae, moco)
        }
        return (versions, unreadable)
    }

    /// Writes the highest versions published per stream, atomically (write, fsync, rename).
    public func writePublished(_ versions: [String: (autoencoder: UInt64, moco: UInt64)]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var text = Self.publishedHeader + "\n"
        for (name, v) in versions.sorted(by: { $0.key < $1.key }) { text += "\(v.autoencoder) \(v.moco) \(name)\n" }
        try Self.writeAtomically(Array(text.utf8), to: publishedPath, directory: directory)
    }

    /// `progress` is called after each `writeChunk` bytes written and before each fsync (the
    /// trainer's health mark: a large checkpoint on a slow disk is work, not a stall).
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String, progress: () -> Void = {}) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CheckpointError.system("open \(temporary)", errno) }
        var written = 0
        while written < bytes.count {
            progress()
            let chunk = min(bytes.count - written, Self.writeChunk)
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, chunk) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                unlink(temporary)
                throw CheckpointError.system("write \(temporary)", e)
            }
            written += n
        }
        progress()
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
        // The rename is durable once the directory is: until then an older file must not go.
        progress()
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw CheckpointError.system("open \(directory)", errno) }
        defer { close(dir) }
        guard fsync(dir) == 0 else { throw CheckpointError.system("fsync \(directory)", errno) }
    }
}

public enum CheckpointError: Error, CustomStringConvertible {
    case system(String, Int32)
    /// A stream's saved state that does not fit its settings could not be written aside.
    case keepingAside(String, String, String)
    /// The data directory is another process's (`lock`): the directory and that process's pid.
    case inUse(String, String)
    /// A checkpoint in a format newer than this daemon reads: its path, its format and ours.
    case newer(String, UInt32, UInt32)

    public var description: String {
        switch self {
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        case .newer(let path, let format, let ours):
            "checkpoint \(path) is in format \(format), written by a newer eddy (this one reads format \(ours)): "
                + "run that version, or move the file out of the data directory to start from the checkpoint before it"
        case .inUse(let directory, let pid):
            "the data directory \(directory) is in use by another eddy (pid \(pid)): two daemons on one directory "
                + "would take each other's checkpoints; give this one its own --data-dir"
        case .keepingAside(let name, let path, let why):
            "stream \(name)'s saved state does not fit its settings and could not be kept aside at \(path) (\(why)): "
                + "the daemon does not start rather than lose it"
        }
    }
}
