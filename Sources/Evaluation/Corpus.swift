import Foundation

/// A labelled corpus laid out as NAB's is: `data/<category>/<file>.csv` (header `timestamp,value`) and
/// `labels/combined_windows.json` mapping `<category>/<file>.csv` to its windows, `[[start, end], ...]`
/// as timestamps.
public struct Corpus: Sendable {
    public struct File: Sendable {
        public var name: String
        public var timestamps: [String]
        public var values: [Float]
        public var series: LabelledSeries
    }

    public var files: [File]

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String, String)
        public var description: String {
            switch self {
            case .unreadable(let path, let why): "\(path): \(why)"
            }
        }
    }

    /// Reads every labelled CSV under `directory` (sorted by name); `only` keeps files whose name
    /// contains it.
    public init(directory: String, only: String? = nil) throws {
        let root = URL(fileURLWithPath: directory)
        let labelsPath = root.appendingPathComponent("labels/combined_windows.json").path
        guard let labelData = FileManager.default.contents(atPath: labelsPath) else {
            throw Failure.unreadable(labelsPath, "missing: a corpus needs labels/combined_windows.json and data/")
        }
        guard let labels = try? JSONSerialization.jsonObject(with: labelData) as? [String: [[String]]] else {
            throw Failure.unreadable(labelsPath, "not a JSON object mapping files to [[start, end], ...]")
        }
        files = []
        for name in labels.keys.sorted() where only.map({ name.contains($0) }) ?? true {
            let path = root.appendingPathComponent("data").appendingPathComponent(name).path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Failure.unreadable(path, "missing (it is in the labels)")
            }
            let (timestamps, values) = try Self.readSeries(text, path: path)
            let windows = try labels[name]!.map { pair -> ClosedRange<Int> in
                guard pair.count == 2 else { throw Failure.unreadable(labelsPath, "\(name): a window is not [start, end]") }
                return try Self.rows(from: pair[0], to: pair[1], in: timestamps, file: name)
            }
            files.append(
                File(
                    name: name, timestamps: timestamps, values: values,
                    series: LabelledSeries(name: name, rows: values.count, windows: windows)))
        }
    }

    /// `timestamp,value` rows.
    static func readSeries(_ text: String, path: String) throws -> ([String], [Float]) {
        var timestamps: [String] = [], values: [Float] = []
        for (i, line) in text.split(whereSeparator: \.isNewline).enumerated() where i > 0 {
            let parts = line.split(separator: ",")
            guard parts.count == 2, let v = Float(parts[1].trimmingCharacters(in: .whitespaces)) else {
                throw Failure.unreadable(path, "line \(i + 1) is not timestamp,value")
            }
            timestamps.append(String(parts[0]))
            values.append(v)
        }
        return (timestamps, values)
    }

    /// The rows from the first at or after `start` to the last at or before `end`. Timestamps compare
    /// as text on their first 19 characters (`YYYY-MM-DD hh:mm:ss`; the labels add fractions).
    static func rows(from start: String, to end: String, in timestamps: [String], file: String) throws -> ClosedRange<Int> {
        let s = start.prefix(19), e = end.prefix(19)
        guard let first = timestamps.firstIndex(where: { $0.prefix(19) >= s }),
            let last = timestamps.lastIndex(where: { $0.prefix(19) <= e }), first <= last
        else { throw Failure.unreadable(file, "window \(start) to \(end) holds no row") }
        return first...last
    }
}
