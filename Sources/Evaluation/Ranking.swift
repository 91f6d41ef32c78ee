/// How well a score ranks labelled rows, pooled over a corpus: does an anomalous row score above a
/// normal one? Both measures treat tied scores as one step (no credit for an order the score does
/// not give).
public enum Ranking {
    /// Area under the precision-recall curve as average precision: the mean, over the positive rows,
    /// of the precision at the threshold of their score (scikit-learn's `average_precision_score`).
    /// With no positive row, nil.
    public static func averagePrecision(_ scores: [Float], _ labels: [Bool]) -> Double? {
        precondition(scores.count == labels.count)
        let scores = scores.map { $0.isNaN ? -Float.infinity : $0 }  // NaN ranks last (and has an order)
        let positives = labels.reduce(0) { $0 + ($1 ? 1 : 0) }
        guard positives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var truePositives = 0, seen = 0, sum = 0.0, i = 0
        while i < order.count {
            // One threshold per distinct score: the whole tied group is in or out together.
            let s = scores[order[i]]
            var groupPositives = 0
            while i < order.count && scores[order[i]] == s {
                if labels[order[i]] { groupPositives += 1 }
                seen += 1
                i += 1
            }
            truePositives += groupPositives
            sum += Double(groupPositives) * Double(truePositives) / Double(seen)
        }
        return sum / Double(positives)
    }

    /// Area under the ROC curve: the probability that a random anomalous row scores above a random
    /// normal one, ties counting half (Mann-Whitney U over midranks). Nil without both kinds of row.
    public static func rocArea(_ scores: [Float], _ labels: [Bool]) -> Double? {
        precondition(scores.count == labels.count)
        let scores = scores.map { $0.isNaN ? -Float.infinity : $0 }  // NaN ranks last (and has an order)
        let positives = labels.reduce(0) { $0 + ($1 ? 1 : 0) }, negatives = labels.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0, i = 0
        while i < order.count {
            var j = i
            while j < order.count && scores[order[j]] == scores[order[i]] { j += 1 }
            let midrank = Double(i + j + 1) / 2  // ranks i+1 ... j
            for k in i..<j where labels[order[k]] { rankSum += midrank }
            i = j
        }
        let p = Double(positives), n = Double(negatives)
        return (rankSum - p * (p + 1) / 2) / (p * n)
    }
}
