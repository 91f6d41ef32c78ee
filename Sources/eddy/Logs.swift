import EddyProtocol
import Foundation
import Pipeline
import Workloads
import ZeroMQ

/// Lines from a file descriptor as raw bytes (a log line need not be valid UTF-8: the daemon
/// repairs and counts it), in the chunks they arrive in: `tail -F` lines are sent as soon as they
/// are read, a file's in full batches.
struct LineReader {
    let fd: Int32
    var pending: [UInt8] = []
    var finished = false
    /// The last read ended with "\r": a "\n" that starts the next belongs to it (one CRLF).
    var afterCR = false

    init(path: String) throws {
        if path == "-" {
            fd = 0
        } else {
            fd = open(path, O_RDONLY)
            if fd < 0 { throw CommandFailure("cannot read \(path): \(String(cString: strerror(errno)))") }
        }
    }

    /// The complete lines read by one `read` (blocking until there is some), without their "\n",
    /// "\r\n" or lone "\r" (old Mac files; `replay` split them so and `feed` sent none of their
    /// lines, from review); at the end, the last unterminated line. Empty once the input is
    /// finished; throws if it cannot be read.
    mutating func next() throws -> [Data] {
        var out: [Data] = []
        while out.isEmpty && !finished {
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                // Not the end of the input (a directory, an I/O error): said, not taken for one.
                throw CommandFailure("cannot read: \(String(cString: strerror(errno)))")
            }
            if n <= 0 {
                finished = true
                if !pending.isEmpty { out.append(Data(pending)) }  // unterminated: a line end leaves none behind
                pending = []
                break
            }
            pending += chunk[..<n]
            var start = 0
            if afterCR && pending.first == 10 { start = 1 }
            afterCR = false
            (out, start) = Self.lines(in: pending, from: start, into: out)
            // A line ended by "\r" goes at once (a live pipe's row is not held for the next read);
            // a "\n" that follows it in the next read is its CRLF's.
            afterCR = start > 0 && pending[start - 1] == 13
            pending.removeFirst(start)
        }
        return out
    }

    /// The lines of `bytes` from `start` ended by "\n", "\r\n" or a lone "\r", appended to `out`,
    /// and where the unterminated rest begins.
    static func lines(in bytes: [UInt8], from start: Int, into out: [Data]) -> ([Data], Int) {
        var out = out, start = start
        while let end = bytes[start...].firstIndex(where: { $0 == 10 || $0 == 13 }) {
            out.append(Data(bytes[start..<end]))
            start = bytes[end] == 13 && end + 1 < bytes.count && bytes[end + 1] == 10 ? end + 2 : end + 1
        }
        return (out, start)
    }

    /// Every line of a whole input, as `next` reads them (the last may be unterminated).
    static func lines(of bytes: [UInt8]) -> [Data] {
        let (out, rest) = lines(in: bytes, from: 0, into: [])
        return rest < bytes.count ? out + [Data(bytes[rest...])] : out
    }

}

/// The frames of a LineBatch message: the stream's name and the batch.
func lineFrames(stream: String, sequence: UInt64, lines: [Data], timestamps: [Int64]) throws -> [[UInt8]] {
    var batch = Eddy_V1_LineBatch()
    batch.stream = stream
    batch.sequence = sequence
    batch.lines = lines
    batch.timestampsNs = timestamps
    return [Array(stream.utf8), try batch.serializedBytes()]
}

/// `eddy feed --log`: lines from a file or standard input to a log stream, at most `batch` to a
/// message, each message sent as soon as its lines are read. Lines read from standard input are
/// stamped with the time they were read (a live `tail -F`: silences are then measured in seconds);
/// a file's lines are not, unless `stamp` says so.
func feedLines(
    _ path: String, stream: String, batch: Int, maxBytes: Int, stamp: Bool?, rate: Double, push: borrowing Socket
) throws -> UInt64 {
    var reader = try LineReader(path: path)
    let stamped = stamp ?? (path == "-")
    var sequence: UInt64 = 0
    let start = Date()
    while true {
        let lines = try reader.next()
        if lines.isEmpty { break }
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        // At most `batch` lines and `maxBytes` bytes of them to a message (one line is sent alone
        // however long: the daemon refuses it, and says so on error/).
        var from = 0
        while from < lines.count {
            var to = from + 1, bytes = lines[from].count
            while to < lines.count && to - from < batch && bytes + lines[to].count + 12 <= maxBytes {
                bytes += lines[to].count + 12
                to += 1
            }
            let part = Array(lines[from..<to])
            from = to
            try push.deliver(
                try lineFrames(
                    stream: stream, sequence: sequence, lines: part,
                    timestamps: stamped ? Array(repeating: now, count: part.count) : []))
            sequence += UInt64(part.count)
            if rate > 0 {
                let due = Double(sequence) / rate - Date().timeIntervalSince(start)
                if due > 0 { Thread.sleep(forTimeInterval: due) }
            }
        }
    }
    return sequence
}

/// `eddy feed --demo-log`: the synthetic service log (`ServiceLogDemo`), stamped as sent, at `rate`
/// lines per second (0: as fast as possible), `batch` lines to a message, `count` lines (0: until
/// interrupted).
func feedDemoLog(stream: String, batch: Int, rate: Double, count: Int, faultEvery: Int, push: borrowing Socket) throws -> UInt64 {
    var demo = ServiceLogDemo(faultEvery: faultEvery)
    var sequence: UInt64 = 0
    let start = Date()
    while count == 0 || Int(sequence) < count {
        let n = count == 0 ? batch : min(batch, count - Int(sequence))
        let lines = (0..<n).map { _ in Data(demo.next().utf8) }
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        try push.deliver(try lineFrames(stream: stream, sequence: sequence, lines: lines, timestamps: Array(repeating: now, count: n)))
        sequence += UInt64(n)
        if rate > 0 {
            let due = Double(sequence) / rate - Date().timeIntervalSince(start)
            if due > 0 { Thread.sleep(forTimeInterval: due) }
        }
    }
    return sequence
}
