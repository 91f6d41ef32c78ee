import Evaluation
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

/// The NAB scorer on small hand-made cases whose answers follow from the rules by hand.
/// A file of 100 rows has a probationary period of 15 rows; its window is rows 40...49 (10 rows).
@Suite struct NABScoreTests {
    let file = LabelledSeries(name: "f", rows: 100, windows: [40...49])
    let standard = NABProfile.standard

    func scores(detectingAt rows: [Int]) -> [Float] {
        var s = [Float](repeating: 0, count: 100)
        for r in rows { s[r] = 1 }
        return s
    }

    @Test func theSigmoidHasNABsValuesAtItsLandmarks() {
        #expect(abs(NAB.scaledSigmoid(-1) - 0.98661) < 1e-5)
        #expect(abs(NAB.scaledSigmoid(-0.5) - 0.84828) < 1e-5)
        #expect(NAB.scaledSigmoid(0) == 0)
        #expect(abs(NAB.scaledSigmoid(1) + 0.98661) < 1e-5)
        #expect(NAB.scaledSigmoid(3) == -1)
    }

    @Test func probationIsFifteenPercentAtMostSevenHundredFifty() {
        #expect(file.probation == 15)
        #expect(LabelledSeries(name: "g", rows: 10_000, windows: []).probation == 750)
    }

    @Test func aDetectionAtTheWindowsStartScoresFull() {
        // Position −(49 − 40 + 1)/10 = −1: the weight is 1 after division by the maximum.
        let result = NAB.score([file], scores: [scores(detectingAt: [40])], profile: standard)
        #expect(abs(result.raw - 1) < 1e-9)
        #expect(abs(result.normalised - 100) < 1e-9)
        #expect(result.null == -1 && result.perfect == 1)
    }

    @Test func aLateDetectionScoresLessThanAnEarlyOne() {
        // Row 47: position −(49 − 47 + 1)/10 = −0.3, weight (2σ(1.5) − 1)/(2σ(5) − 1).
        let expected = (2 / (1 + exp(-1.5)) - 1) / (2 / (1 + exp(-5.0)) - 1)
        let late = NAB.score([file], scores: [scores(detectingAt: [47])], profile: standard)
        #expect(abs(late.raw - expected) < 1e-9)
        // Only the best detection of a window counts: adding the late one to an early one changes nothing.
        let both = NAB.fileScore(file, scores: scores(detectingAt: [40, 47]), threshold: 0.5, profile: standard)
        #expect(abs(both - 1) < 1e-9)
    }

    @Test func aFalsePositiveCostsItsWeightAndNoDetectionCostsTheWindow() {
        // Before any window a false positive costs the full 0.11.
        let early = NAB.fileScore(file, scores: scores(detectingAt: [20, 40]), threshold: 0.5, profile: standard)
        #expect(abs(early - (1 - 0.11)) < 1e-9)
        // Just past the window (row 50: distance 1/9 window widths) it costs less than far after it.
        let near = NAB.fileScore(file, scores: scores(detectingAt: [40, 50]), threshold: 0.5, profile: standard)
        let far = NAB.fileScore(file, scores: scores(detectingAt: [40, 90]), threshold: 0.5, profile: standard)
        let nearCost = -(2 / (1 + exp(5.0 / 9)) - 1) * 0.11
        #expect(abs(near - (1 - nearCost)) < 1e-9)
        #expect(abs(far - (1 - 0.11)) < 1e-9)  // 40/9 window widths past: beyond 3, the full cost
        // No detection at all: the missed window costs falseNegative, and normalises to 0.
        let none = NAB.score([file], scores: [scores(detectingAt: [])], profile: standard)
        #expect(none.raw == -1 && none.normalised == 0)
        let missed = NAB.score([file], scores: [scores(detectingAt: [])], profile: .rewardLowFalseNegatives)
        #expect(missed.raw == -2)
    }

    @Test func detectionsDuringProbationAreIgnored() {
        let inProbation = NAB.fileScore(file, scores: scores(detectingAt: [3, 40]), threshold: 0.5, profile: standard)
        #expect(abs(inProbation - 1) < 1e-9)
    }

    @Test func theSweepPicksTheThresholdThatMaximisesTheTotal() {
        // The window's first row scores 0.6, a false positive 0.9, the rest 0.1: the best threshold
        // is 0.6 (take both: 1 − 0.11) rather than 0.9 (a false positive alone: −1 − 0.11).
        var s = [Float](repeating: 0.1, count: 100)
        s[40] = 0.6
        s[25] = 0.9
        let result = NAB.score([file], scores: [s], profile: standard)
        #expect(result.threshold == 0.6)
        #expect(abs(result.raw - 0.89) < 1e-9)
        // With a false positive costing 0.22 instead the answer is the same threshold, a lower score.
        let strict = NAB.score([file], scores: [s], profile: .rewardLowFalsePositives)
        #expect(abs(strict.raw - 0.78) < 1e-9)
    }

    @Test func oneThresholdServesTheWholeCorpus() {
        // Two files: the window of the first peaks at 0.8, of the second at 0.4, and the second has a
        // 0.5 false positive. Threshold 0.4 takes both windows and the false positive: 2 − 0.11.
        let second = LabelledSeries(name: "g", rows: 100, windows: [60...69])
        var a = [Float](repeating: 0, count: 100), b = [Float](repeating: 0, count: 100)
        a[40] = 0.8
        b[60] = 0.4
        b[20] = 0.5
        let result = NAB.score([file, second], scores: [a, b], profile: standard)
        #expect(result.threshold == 0.4)
        #expect(abs(result.raw - 1.89) < 1e-9)
        #expect(abs(result.normalised - 100 * (1.89 + 2) / 4) < 1e-9)
    }

    /// From review: a NaN score (a diverged model) detects nothing; before, the sweep never ended.
    @Test func aNaNScoreDetectsNothing() {
        var a = [Float](repeating: 0, count: 100)
        a[40] = 0.8
        a[10] = .nan
        a[45] = .nan
        let sweep = NAB.sweep([file], scores: [a], profile: standard)
        var clean = a
        clean[10] = 0
        clean[45] = 0
        #expect(sweep.map(\.score) == NAB.sweep([file], scores: [clean], profile: standard).map(\.score))
        #expect(NAB.score([file], scores: [a], profile: standard).threshold == 0.8)
    }

    @Test func eventsCountWindowsFoundAndRunsOfFalseAlarms() {
        // Rows 20-22 are one false alarm, 80 another; the window is found by row 45.
        let e = NAB.events(file, scores: scores(detectingAt: [20, 21, 22, 45, 80]), threshold: 0.5)
        #expect(e == NAB.Events(found: 1, missed: 0, falseAlarms: 2))
        #expect(abs(e.precision! - 1.0 / 3) < 1e-12 && e.recall == 1 && abs(e.f1! - 0.5) < 1e-12)
        let miss = NAB.events(file, scores: scores(detectingAt: []), threshold: 0.5)
        #expect(miss == NAB.Events(found: 0, missed: 1, falseAlarms: 0) && miss.f1 == 0)
        // Nothing detected: no precision, and the missed event makes F1 0.
        #expect(miss.precision == nil && miss.recall == 0)
    }

    @Test func eventFiguresAreUndefinedWithoutEvents() {
        // A corpus with no events says nothing of finding them: silent or not, no recall and no F1
        // (a silent one scored 1.00), and its false alarms count on their own.
        let silent = NAB.Events(found: 0, missed: 0, falseAlarms: 0)
        #expect(silent.f1 == nil && silent.recall == nil && silent.precision == nil)
        let noisy = NAB.Events(found: 0, missed: 0, falseAlarms: 3)
        #expect(noisy.f1 == nil && noisy.recall == nil && noisy.precision == 0)
        // With events, F1 is 2·found / (2·found + false alarms + missed), the harmonic mean.
        let some = NAB.Events(found: 3, missed: 1, falseAlarms: 2)
        let p = 3.0 / 5, r = 3.0 / 4
        #expect(abs(some.f1! - 2 * p * r / (p + r)) < 1e-12 && abs(some.f1! - 6.0 / 9) < 1e-12)
    }
}

@Suite struct CorpusTests {
    /// Windows given as timestamps (with NAB's fractional seconds) map to the rows they cover.
    @Test func windowsMapToRows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("eddy-corpus-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("data/cat"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("labels"), withIntermediateDirectories: true)
        let rows = (0..<10).map { String(format: "2014-01-01 00:%02d:00,%d", $0 * 5, $0) }
        try ("timestamp,value\n" + rows.joined(separator: "\n") + "\n").write(
            to: dir.appendingPathComponent("data/cat/a.csv"), atomically: true, encoding: .utf8)
        try #"{"cat/a.csv": [["2014-01-01 00:10:00.000000", "2014-01-01 00:22:00.000000"]]}"#.write(
            to: dir.appendingPathComponent("labels/combined_windows.json"), atomically: true, encoding: .utf8)
        let corpus = try Corpus(directory: dir.path)
        #expect(corpus.files.count == 1)
        #expect(corpus.files[0].values == (0..<10).map(Float.init))
        #expect(corpus.files[0].series.windows == [2...4])
    }
}

@Suite struct SeriesPlotTests {
    /// The SVG parses as XML and holds the series, the score, the threshold line, a shaded window and
    /// one mark per alert; a long series is drawn as at most two points per pixel column.
    @Test func theSVGIsWellFormedAndDrawsEveryPart() throws {
        let n = 10_000
        let values = (0..<n).map { Float(sin(Double($0) * 0.01)) }
        var scores = [Float](repeating: 0.2, count: n)
        scores[5000] = 0.99
        let plot = SeriesPlot(
            title: "a <test> & more", values: values, scores: scores, threshold: 0.9, windows: [4900...5100],
            alerts: [5000], unscoredPrefix: 750)
        let svg = plot.svg()
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "well-formed XML")
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.components(separatedBy: "<circle").count - 1 == 1)
        #expect(svg.contains("stroke-dasharray"))
        #expect(svg.contains("<title>labelled window</title>") && svg.contains("<title>unscored</title>"))
        #expect(svg.contains("a &lt;test&gt; &amp; more"))
        let warming = SeriesPlot(
            title: "t", values: values, scores: scores, threshold: 0.9, unscoredPrefix: 400, prefixLabel: "warming up & <no> alerts"
        ).svg()
        #expect(warming.contains("<title>warming up &amp; &lt;no&gt; alerts</title>") && !warming.contains("unscored"))
        let seriesPoints = svg.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }.split(separator: " ").count
        #expect(seriesPoints <= 2 * 1110 && seriesPoints > 1000)
    }
}
