import ArgumentParser
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// How log records are written to standard error.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    /// `text` under journald (JOURNAL_STREAM names standard error) becomes `journal`.
    case text, json, journal

    /// Under systemd, standard error is the journal's stream when JOURNAL_STREAM's `device:inode`
    /// is standard error's (systemd.exec(5)).
    static func journalIsStandardError(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return value == "\(st.st_dev):\(st.st_ino)"
    }
}

/// One record per line on standard error:
/// - `json`: `{"time":"…","level":"warning","logger":"eddy.serve","message":"…","stream.id":"pump-7"}`,
///   metadata as string fields (for Loki, Elasticsearch, `jq`);
/// - `journal`: `<4>message stream.id=pump-7`, the sd-daemon(3) priority prefix journald turns into
///   the record's PRIORITY (so `journalctl -p warning` works), no timestamp (journald adds its own).
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let lock = NSLock()

    func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        var all = metadata
        if let explicit { all.merge(explicit) { $1 } }
        let text = format == .json ? json(level, message, all) : journal(level, message, all)
        // One write(2) per record: records from several threads never interleave.
        var bytes = Array(text.utf8)
        Self.lock.lock()
        defer { Self.lock.unlock() }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 && errno != EINTR { break }
            if n > 0 { offset += n }
        }
    }

    func json(_ level: Logger.Level, _ message: Logger.Message, _ metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = [
            ("time", ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!,
                                                 formatOptions: [.withInternetDateTime, .withFractionalSeconds])),
            ("level", level.rawValue), ("logger", label), ("message", message.description),
        ]
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { fields.append((k, "\(v)")) }
        return "{" + fields.map { "\(Self.quoted($0.0)):\(Self.quoted($0.1))" }.joined(separator: ",") + "}\n"
    }

    func journal(_ level: Logger.Level, _ message: Logger.Message, _ metadata: Logger.Metadata) -> String {
        let tail = metadata.sorted(by: { $0.key < $1.key }).map { " \($0.key)=\($0.value)" }.joined()
        // One record per line: a newline inside a message would start a record without a priority.
        return "<\(Self.priority(level))>\(message.description)\(tail)".replacingOccurrences(of: "\n", with: " ") + "\n"
    }

    /// syslog priorities, as sd-daemon(3) prefixes use them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
