import Evaluation
import Foundation
import Testing

/// Average precision and ROC area on cases worked by hand, ties included.
@Suite struct RankingTests {
    @Test func averagePrecisionIsTheMeanPrecisionAtEachPositive() throws {
        // Positives at ranks 1 and 3: precision 1/1 and 2/3.
        let ap = try #require(Ranking.averagePrecision([0.9, 0.8, 0.7, 0.6], [true, false, true, false]))
        #expect(abs(ap - (1 + 2.0 / 3) / 2) < 1e-12)
        // A perfect order scores 1 whatever the scale of the scores.
        #expect(Ranking.averagePrecision([3, 2, -5], [true, true, false]) == 1)
    }

    @Test func tiedScoresAreOneThreshold() throws {
        // The tie at 0.5 holds a positive and a negative: precision 1/2 there, then 2/3.
        let ap = try #require(Ranking.averagePrecision([0.5, 0.5, 0.1], [true, false, true]))
        #expect(abs(ap - (0.5 + 2.0 / 3) / 2) < 1e-12)
        // All tied: the precision of the whole set, the share of positives.
        #expect(Ranking.averagePrecision([1, 1, 1, 1], [true, false, false, false]) == 0.25)
        #expect(Ranking.rocArea([1, 1, 1, 1], [true, false, true, false]) == 0.5)
    }

    @Test func rocAreaCountsOrderedPairs() throws {
        // Of the four (positive, negative) pairs, (0.7, 0.8) is the wrong way round.
        #expect(Ranking.rocArea([0.9, 0.8, 0.7, 0.6], [true, false, true, false]) == 0.75)
        #expect(Ranking.rocArea([0.1, 0.9], [true, false]) == 0)
        #expect(Ranking.rocArea([0.9, 0.1], [true, false]) == 1)
    }

    /// A NaN (a model that diverged) ranks last instead of stalling the tie loop.
    @Test func notANumberRanksLast() {
        #expect(Ranking.averagePrecision([.nan, 0.9, 0.1], [false, true, false]) == 1)
        #expect(Ranking.rocArea([.nan, 0.9, 0.1], [true, false, false]) == 0)
    }

    @Test func undefinedWithoutBothKinds() {
        #expect(Ranking.averagePrecision([0.3, 0.2], [false, false]) == nil)
        #expect(Ranking.rocArea([0.3, 0.2], [true, true]) == nil)
    }
}

/// A corpus of CSVs with a label column: families from folders, values from every other column,
/// events from runs of labelled rows.
@Suite struct LabelledRowsCorpusTests {
    func write(_ files: [String: String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("eddy-corpus-\(UUID().uuidString)")
        for (name, text) in files {
            let url = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func readsFamiliesChannelsAndLabels() throws {
        let root = try write([
            "machines/a.csv": "timestamp,value-0,value-1,is_anomaly\n0,1.5,2,0\n1,1.25,3,1\n2,1,4,0\n",
            "top.csv": "label,x\n0,7\n0,8\n",
        ])
        defer { try? FileManager.default.removeItem(at: root) }
        let corpus = try Corpus(directory: root.path, slack: 0)
        #expect(corpus.layout == .labelledRows)
        #expect(corpus.files.map(\.name) == ["machines/a.csv", "top.csv"])
        #expect(corpus.families == ["machines", "."])
        let a = corpus.files[0]
        #expect(a.dimension == 2 && a.rows == 3)
        #expect(a.values == [1.5, 2, 1.25, 3, 1, 4])
        #expect(a.channel(1) == [2, 3, 4])
        #expect(a.labels == [false, true, false])
        #expect(a.series.windows == [1...1] && a.series.probation == 0)
        #expect(corpus.files[1].dimension == 1 && corpus.files[1].series.windows.isEmpty)
    }

    /// `eval --skip`: named columns are not features (any case, in the files that have them); a name
    /// no file has is an error, as is skipping a column of NAB's two.
    @Test func skippedColumnsAreNotFeatures() throws {
        let root = try write([
            "a.csv": "timestamp,Machine_ID,value-0,value-1,is_anomaly\n0,7,1.5,2,0\n1,7,1.25,3,1\n",
            "b.csv": "value-0,value-1,label\n5,6,0\n",
        ])
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(try Corpus(directory: root.path).files[0].dimension == 3, "without --skip the id is learned from")
        let corpus = try Corpus(directory: root.path, skip: ["machine_id"])
        #expect(corpus.files.map(\.dimension) == [2, 2])
        #expect(corpus.files[0].values == [1.5, 2, 1.25, 3])
        #expect { try Corpus(directory: root.path, skip: ["host"]) } throws: { "\($0)".contains("no file has a column \"host\"") }
    }

    @Test func eventsExtendBySlackButNotIntoTheNextEvent() {
        let labels = [false, true, true, false, false, false, true, false]
        #expect(Corpus.events(labels, slack: 2) == [1...4, 6...7])
        #expect(Corpus.events(labels, slack: 0) == [1...2, 6...6])
        #expect(Corpus.events([true, true], slack: 5) == [0...1])
    }

    @Test func badFilesSayWhereAndWhy() throws {
        let noLabel = try write(["f.csv": "timestamp,value\n0,1\n"])
        defer { try? FileManager.default.removeItem(at: noLabel) }
        #expect { try Corpus(directory: noLabel.path) } throws: { "\($0)".contains("no label column") }
        let badLabel = try write(["f.csv": "value,is_anomaly\n1,0\n2,yes\n"])
        defer { try? FileManager.default.removeItem(at: badLabel) }
        #expect { try Corpus(directory: badLabel.path) } throws: { "\($0)".contains("line 3") }
        let notFinite = try write(["f.csv": "value,is_anomaly\nnan,0\n"])
        defer { try? FileManager.default.removeItem(at: notFinite) }
        #expect { try Corpus(directory: notFinite.path) } throws: { "\($0)".contains("not a finite number") }
        #expect { try Corpus(directory: "/nonexistent-eddy-corpus") } throws: { "\($0)".contains("not a directory") }
    }
}
