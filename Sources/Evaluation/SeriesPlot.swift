import Foundation

/// A stream and its anomaly scores as an SVG a browser opens: the series on top with alerts marked,
/// the score below with the threshold, labelled windows shaded across both, the probationary (or
/// warm-up) stretch greyed. Long series are drawn one min-max pair per pixel column, so a spike of one
/// row still shows and the file stays small.
public struct SeriesPlot: Sendable {
    public var title: String
    public var values: [Float]
    public var scores: [Float]
    public var threshold: Float
    public var windows: [ClosedRange<Int>]
    public var alerts: [Int]
    /// Rows before this are greyed (NAB's probation, or a stream's warm-up); 0: none.
    public var unscoredPrefix: Int
    /// What the grey band is called in the plot.
    public var prefixLabel: String

    public init(
        title: String, values: [Float], scores: [Float], threshold: Float, windows: [ClosedRange<Int>] = [],
        alerts: [Int] = [], unscoredPrefix: Int = 0, prefixLabel: String = "unscored"
    ) {
        precondition(values.count == scores.count, "one score per value")
        self.title = title
        self.values = values
        self.scores = scores
        self.threshold = threshold
        self.windows = windows
        self.alerts = alerts
        self.unscoredPrefix = unscoredPrefix
        self.prefixLabel = prefixLabel
    }

    static let width = 1200.0, left = 70.0, right = 20.0
    static let seriesTop = 50.0, seriesHeight = 230.0, scoreTop = 310.0, scoreHeight = 110.0, height = 460.0

    public func svg() -> String {
        let n = max(values.count, 1)
        let plotWidth = Self.width - Self.left - Self.right
        func x(_ row: Int) -> Double { Self.left + plotWidth * Double(row) / Double(max(n - 1, 1)) }
        let finite = values.filter(\.isFinite)
        var lo = Double(finite.min() ?? 0), hi = Double(finite.max() ?? 1)
        if hi - lo < 1e-9 { lo -= 1; hi += 1 }
        func ySeries(_ v: Float) -> Double { Self.seriesTop + Self.seriesHeight * (1 - (Double(v) - lo) / (hi - lo)) }
        func yScore(_ s: Float) -> Double { Self.scoreTop + Self.scoreHeight * (1 - Double(min(max(s, 0), 1))) }

        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(Self.width))" height="\(Int(Self.height))" \
            viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Self.left)" y="22" font-size="15" font-weight="bold">\(Self.escape(title))</text>
            <text x="\(Self.left)" y="40" fill="#555">series (blue), alerts (red), labelled windows (shaded), \
            alert strength with threshold \(Self.format(threshold)) (dashed)</text>

            """
        // Shading first, so the lines draw over it.
        let bandTop = Self.seriesTop, bandHeight = Self.scoreTop + Self.scoreHeight - Self.seriesTop
        if unscoredPrefix > 0 {
            out += Self.rect(Self.left, bandTop, x(min(unscoredPrefix, n - 1)) - Self.left, bandHeight, "#eeeeee", Self.escape(prefixLabel))
        }
        for w in windows {
            let a = x(w.lowerBound), b = x(min(w.upperBound, n - 1))
            out += Self.rect(a, bandTop, max(b - a, 1), bandHeight, "#f6c9c4", "labelled window")
        }
        // Frames and labels.
        out += Self.rect(Self.left, Self.seriesTop, plotWidth, Self.seriesHeight, "none", nil, stroke: "#999")
        out += Self.rect(Self.left, Self.scoreTop, plotWidth, Self.scoreHeight, "none", nil, stroke: "#999")
        out += Self.label(Self.left - 6, Self.seriesTop + 4, Self.format(Float(hi)))
        out += Self.label(Self.left - 6, Self.seriesTop + Self.seriesHeight, Self.format(Float(lo)))
        out += Self.label(Self.left - 6, Self.scoreTop + 4, "1")
        out += Self.label(Self.left - 6, Self.scoreTop + Self.scoreHeight, "0")
        out += "<text x=\"\(Self.left)\" y=\"\(Self.scoreTop - 6)\" fill=\"#555\">alert strength (what the threshold is compared with)</text>\n"
        out += "<text x=\"\(Self.left)\" y=\"\(Self.height - 14)\" fill=\"#555\">row 0</text>\n"
        out += "<text x=\"\(Self.width - Self.right)\" y=\"\(Self.height - 14)\" fill=\"#555\" text-anchor=\"end\">row \(n - 1)</text>\n"
        // Lines.
        out += Self.polyline(Self.envelope(values, columns: Int(plotWidth)), x: x, y: ySeries, colour: "#1f5fbf")
        out += Self.polyline(Self.envelope(scores, columns: Int(plotWidth)), x: x, y: yScore, colour: "#333333")
        let ty = yScore(threshold)
        out += "<line x1=\"\(Self.f(Self.left))\" y1=\"\(Self.f(ty))\" x2=\"\(Self.f(Self.width - Self.right))\" y2=\"\(Self.f(ty))\" "
            + "stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\n"
        // Alerts: one mark per pixel column.
        var lastColumn = -1
        for row in alerts.sorted() where row >= 0 && row < values.count {
            let column = Int(x(row))
            guard column != lastColumn else { continue }
            lastColumn = column
            out += "<circle cx=\"\(Self.f(x(row)))\" cy=\"\(Self.f(ySeries(values[row])))\" r=\"3.5\" fill=\"#d62728\"/>\n"
        }
        return out + "</svg>\n"
    }

    /// (row, value) pairs to draw: every row when they fit, else the min and max of each column's rows
    /// in the order they occur.
    static func envelope(_ v: [Float], columns: Int) -> [(Int, Float)] {
        guard v.count > 2 * columns else { return v.enumerated().map { ($0.offset, $0.element) } }
        var out: [(Int, Float)] = []
        out.reserveCapacity(2 * columns)
        for c in 0..<columns {
            let a = c * v.count / columns, b = (c + 1) * v.count / columns
            guard a < b else { continue }
            var lo = a, hi = a
            for i in a..<b {
                if v[i] < v[lo] { lo = i }
                if v[i] > v[hi] { hi = i }
            }
            out.append((min(lo, hi), v[min(lo, hi)]))
            if lo != hi { out.append((max(lo, hi), v[max(lo, hi)])) }
        }
        return out
    }

    static func polyline(_ points: [(Int, Float)], x: (Int) -> Double, y: (Float) -> Double, colour: String) -> String {
        let list = points.filter { $0.1.isFinite }.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
        return "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1\" points=\"\(list)\"/>\n"
    }

    static func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, _ fill: String, _ title: String?, stroke: String? = nil) -> String {
        let s = stroke.map { " stroke=\"\($0)\"" } ?? ""
        let t = title.map { "<title>\($0)</title>" } ?? ""
        return "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"\(fill)\"\(s)>\(t)</rect>\n"
    }

    static func label(_ x: Double, _ y: Double, _ text: String) -> String {
        "<text x=\"\(f(x))\" y=\"\(f(y))\" text-anchor=\"end\" fill=\"#555\">\(escape(text))</text>\n"
    }

    static func f(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    static func format(_ v: Float) -> String {
        let a = abs(v)
        if a != 0 && (a >= 1e5 || a < 1e-3) { return String(format: "%.3g", Double(v)) }
        return String(format: "%.4g", Double(v))
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
