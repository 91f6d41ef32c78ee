import Foundation

/// A labelled corpus, in one of two layouts:
///
/// - **NAB's**: `data/<family>/<file>.csv` (header `timestamp,value`) and
///   `labels/combined_windows.json` mapping `<family>/<file>.csv` to its windows, `[[start, end], ...]`
///   as timestamps. Scored with NAB's probationary period.
/// - **Labelled rows**: any other directory of CSV files (`<family>/<file>.csv`, or files at the top,
///   family `.`), each with a header, an optional `timestamp` column, one label column
///   (`is_anomaly`, `label`, `anomaly`: 0 or 1 per row) and one or more value columns. A run of
///   labelled rows is one event; its window extends `slack` rows past the run, since a windowed
///   detector sees a change up to a window's length after it starts. Nothing is on probation.
///
/// A file's family is its folder: the unit that leave-one-family-out cross-validation holds back.
public struct Corpus: Sendable {
    public enum Layout: String, Sendable { case nab, labelledRows = "labelled-rows" }

    public struct File: Sendable {
        public var name: String
        public var family: String
        /// Values per row: 1 for NAB's files.
        public var dimension: Int
        public var timestamps: [String]
        /// `rows × dimension` values, row after row.
        public var values: [Float]
        public var series: LabelledSeries
        /// Per row: whether it is labelled anomalous (NAB: inside a window; labelled rows: the label).
        public var labels: [Bool]

        public var rows: Int { series.rows }
        /// Channel `c` of every row.
        public func channel(_ c: Int) -> [Float] { stride(from: c, to: values.count, by: dimension).map { values[$0] } }
    }

    public var layout: Layout
    public var files: [File]
    /// CSV files under the corpus that are not scored (NAB's layout: under `data/` and not in the
    /// labels), for the caller to say so.
    public var skipped: [String] = []

    /// Families in order of first appearance (files are sorted by name).
    public var families: [String] {
        var seen: [String] = []
        for f in files where !seen.contains(f.family) { seen.append(f.family) }
        return seen
    }

    /// Names a label column may have (compared lowercased).
    public static let labelColumns: Set<String> = ["is_anomaly", "label", "anomaly", "is_anomalous", "labels"]

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String, String)
        public var description: String {
            switch self {
            case .unreadable(let path, let why): "\(path): \(why)"
            }
        }
    }

    /// Reads every labelled CSV under `directory` (sorted by name); `only` keeps files whose name
    /// contains it. NAB's layout when `labels/combined_windows.json` exists, labelled rows otherwise.
    ///
    /// `skip` names columns of labelled-row files that are not features either (compared
    /// lowercased, as `eddy replay --skip`); a name no file has is an error (a misspelt column would
    /// be learned from without a word).
    public init(directory: String, only: String? = nil, slack: Int = 16, skip: Set<String> = []) throws {
        let root = URL(fileURLWithPath: directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure.unreadable(directory, "not a directory")
        }
        let labelsPath = root.appendingPathComponent("labels/combined_windows.json").path
        if FileManager.default.fileExists(atPath: labelsPath) {
            layout = .nab
            files = try Self.readNAB(root: root, labelsPath: labelsPath, only: only)
            let named = Set(files.map(\.name))
            let data = root.appendingPathComponent("data").path
            skipped = (FileManager.default.enumerator(atPath: data)?.compactMap { $0 as? String } ?? [])
                .filter { name in name.lowercased().hasSuffix(".csv") && !named.contains(name) && (only.map { name.contains($0) } ?? true) }
                .sorted()
        } else {
            layout = .labelledRows
            let skip = Set(skip.map { $0.lowercased() })
            var found: Set<String> = []
            files = try Self.readLabelledRows(root: root, only: only, slack: max(0, slack), skip: skip, found: &found)
            if let missing = skip.subtracting(found).sorted().first, !files.isEmpty {
                throw Failure.unreadable(directory, "no file has a column \"\(missing)\" to skip")
            }
        }
        if layout == .nab, let name = skip.sorted().first {
            throw Failure.unreadable(directory, "NAB's files are timestamp,value: there is no column \"\(name)\" to skip")
        }
    }

    static func readNAB(root: URL, labelsPath: String, only: String?) throws -> [File] {
        guard let labelData = FileManager.default.contents(atPath: labelsPath),
            let labels = try? JSONSerialization.jsonObject(with: labelData) as? [String: [[String]]]
        else {
            throw Failure.unreadable(labelsPath, "not a JSON object mapping files to [[start, end], ...]")
        }
        var files: [File] = []
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
            var inside = [Bool](repeating: false, count: values.count)
            for w in windows { for r in w { inside[r] = true } }
            files.append(
                File(
                    name: name, family: Self.family(of: name), dimension: 1, timestamps: timestamps, values: values,
                    series: LabelledSeries(name: name, rows: values.count, windows: windows), labels: inside))
        }
        guard !files.isEmpty || only != nil else { throw Failure.unreadable(labelsPath, "names no file") }
        return files
    }

    static func readLabelledRows(root: URL, only: String?, slack: Int, skip: Set<String>, found: inout Set<String>) throws -> [File] {
        guard let walker = FileManager.default.enumerator(atPath: root.path) else {
            throw Failure.unreadable(root.path, "cannot list")
        }
        var names: [String] = []
        for case let name as String in walker where name.lowercased().hasSuffix(".csv") { names.append(name) }
        var files: [File] = []
        for name in names.sorted() where only.map({ name.contains($0) }) ?? true {
            let path = root.appendingPathComponent(name).path
            guard let data = FileManager.default.contents(atPath: path) else { throw Failure.unreadable(path, "unreadable") }
            let (timestamps, values, dimension, labels) = try Self.readLabelledRows(
                String(decoding: data, as: UTF8.self), path: path, skip: skip, found: &found)
            files.append(
                File(
                    name: name, family: Self.family(of: name), dimension: dimension, timestamps: timestamps, values: values,
                    series: LabelledSeries(
                        name: name, rows: labels.count, windows: Self.events(labels, slack: slack), probation: 0),
                    labels: labels))
        }
        guard !files.isEmpty || only != nil else {
            throw Failure.unreadable(
                root.path, "no CSV files (a corpus is NAB's layout, with labels/combined_windows.json, or CSVs with a label column)")
        }
        return files
    }

    /// A file's folder, `.` at the top.
    static func family(of name: String) -> String {
        let parts = name.split(separator: "/")
        return parts.count > 1 ? parts.dropLast().joined(separator: "/") : "."
    }

    /// Runs of labelled rows, each extended `slack` rows past its end (not into the next run).
    public static func events(_ labels: [Bool], slack: Int) -> [ClosedRange<Int>] {
        var runs: [ClosedRange<Int>] = []
        var start: Int?
        for (r, l) in labels.enumerated() {
            if l && start == nil { start = r }
            if !l, let s = start { runs.append(s...(r - 1)); start = nil }
        }
        if let s = start { runs.append(s...(labels.count - 1)) }
        return runs.indices.map { k in
            let limit = k + 1 < runs.count ? runs[k + 1].lowerBound - 1 : labels.count - 1
            return runs[k].lowerBound...min(runs[k].upperBound + slack, limit)
        }
    }

    /// A CSV line's fields, each trimmed, and unquoted if it is wholly in double quotes (R's
    /// `write.csv`, Python's `QUOTE_NONNUMERIC`; commas inside quotes are not read).
    public static func fields(of line: some StringProtocol) -> [String] {
        line.split(separator: ",", omittingEmptySubsequences: false).map { raw in
            let f = raw.trimmingCharacters(in: .whitespaces)
            return f.count >= 2 && f.hasPrefix("\"") && f.hasSuffix("\"") ? String(f.dropFirst().dropLast()) : f
        }
    }

    /// A CSV with a header, a label column, an optional timestamp column and value columns. Fields
    /// are read as `eddy replay` and `eddy feed` read them (quoted, after a byte-order mark); before,
    /// a quoted header had "no label column" here (from review).
    static func readLabelledRows(
        _ text: String, path: String, skip: Set<String> = [], found: inout Set<String>
    ) throws -> ([String], [Float], Int, [Bool]) {
        var lines = try Self.rowLines(text, path: path).makeIterator()
        guard var headerLine = lines.next() else { throw Failure.unreadable(path, "empty") }
        if headerLine.hasPrefix("\u{FEFF}") { headerLine = headerLine.dropFirst() }
        let header = fields(of: headerLine).map { $0.lowercased() }
        let labelColumn = header.firstIndex { labelColumns.contains($0) }
        guard let labelColumn else {
            throw Failure.unreadable(path, "no label column (one of \(labelColumns.sorted().joined(separator: ", ")))")
        }
        let timeColumn = header.firstIndex(of: "timestamp")
        // Every label-named column is left out of the values (the first is the label), as replay does.
        let valueColumns = header.indices.filter { !labelColumns.contains(header[$0]) && $0 != timeColumn && !skip.contains(header[$0]) }
        found.formUnion(header.filter(skip.contains))
        guard !valueColumns.isEmpty else { throw Failure.unreadable(path, "no value column") }
        var timestamps: [String] = [], values: [Float] = [], labels: [Bool] = []
        var lineNumber = 1
        while let line = lines.next() {
            lineNumber += 1
            let fields = Self.fields(of: line)
            guard fields.count == header.count else {
                throw Failure.unreadable(path, "line \(lineNumber): \(fields.count) fields, the header has \(header.count)")
            }
            guard let label = Double(fields[labelColumn]), label == 0 || label == 1 else {
                throw Failure.unreadable(path, "line \(lineNumber): label \"\(fields[labelColumn])\" is not 0 or 1")
            }
            for c in valueColumns {
                guard let v = Float(fields[c]), v.isFinite else {
                    throw Failure.unreadable(path, "line \(lineNumber): \"\(fields[c])\" is not a finite number")
                }
                values.append(v)
            }
            timestamps.append(timeColumn.map { fields[$0] } ?? String(lineNumber - 2))
            labels.append(label == 1)
        }
        // Scored, no rows would be a perfect result (no event missed, no false alarm).
        guard !labels.isEmpty else { throw Failure.unreadable(path, "a header and no rows") }
        return (timestamps, values, valueColumns.count, labels)
    }

    /// A file's lines from its header on, blank lines at the end left out. A blank line among the
    /// rows is an error (a one-column export writes a missing value so, and skipping it would move
    /// every later row up one; from review); the rest keep their line numbers.
    static func rowLines(_ text: String, path: String) throws -> [Substring] {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        while let last = lines.last, last.allSatisfy(\.isWhitespace) { lines.removeLast() }
        if let blank = lines.indices.dropFirst().first(where: { lines[$0].allSatisfy(\.isWhitespace) }) {
            throw Failure.unreadable(path, "line \(blank + 1) is empty, among the rows (a missing value?): every row must be whole")
        }
        return lines
    }

    /// `timestamp,value` rows.
    static func readSeries(_ text: String, path: String) throws -> ([String], [Float]) {
        var timestamps: [String] = [], values: [Float] = []
        for (i, line) in try Self.rowLines(text, path: path).enumerated() where i > 0 {
            // Exactly two fields, neither empty (`t,,v` split on "," dropping empties read as a row).
            let parts = line.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].trimmingCharacters(in: .whitespaces).isEmpty,
                let v = Float(parts[1].trimmingCharacters(in: .whitespaces))
            else {
                throw Failure.unreadable(path, "line \(i + 1) is not timestamp,value")
            }
            guard v.isFinite else { throw Failure.unreadable(path, "line \(i + 1): \"\(parts[1])\" is not a finite number") }
            timestamps.append(String(parts[0]))
            values.append(v)
        }
        // Scored, no rows would be a perfect result (from review), as for labelled rows.
        guard !values.isEmpty else { throw Failure.unreadable(path, "a header and no rows") }
        return (timestamps, values)
    }

    /// The rows from the first at or after `start` to the last at or before `end`. Timestamps compare
    /// as text on their first 19 characters (`YYYY-MM-DD hh:mm:ss`; the labels add fractions), ISO's
    /// `T` between date and time read as NAB's space (from review: ISO rows matched no window).
    static func rows(from start: String, to end: String, in timestamps: [String], file: String) throws -> ClosedRange<Int> {
        func key(_ t: String) -> String {
            var k = Array(t.utf8.prefix(19))
            if k.count > 10, k[10] == UInt8(ascii: "T") { k[10] = UInt8(ascii: " ") }
            return String(decoding: k, as: UTF8.self)
        }
        let s = key(start), e = key(end)
        guard let first = timestamps.firstIndex(where: { key($0) >= s }),
            let last = timestamps.lastIndex(where: { key($0) <= e }), first <= last
        else { throw Failure.unreadable(file, "window \(start) to \(end) holds no row") }
        return first...last
    }
}
