/// The daemon's pipeline run offline, one sample at a time: each sample is scored by the current
/// model, then the trainer takes every step the sample earned. What `eddy replay` and `eddy eval`
/// measure is what `eddy serve` runs, and a run is deterministic.
public struct OfflineRun {
    public let pipeline: StreamPipeline
    public private(set) var sequence: UInt64 = 0

    public init(name: String, settings: StreamConfiguration) {
        pipeline = StreamPipeline(name: name, settings: settings)
    }

    /// Scores one sample (`pipeline.sampleDimension` finite values), then trains.
    public mutating func next(_ values: UnsafePointer<Float>) -> SampleScore {
        let s = pipeline.score(values, count: 1, firstSequence: sequence).sample(0)
        while pipeline.trainStep() {}
        sequence += 1
        return s
    }
}

extension OfflineRun {
    /// A log stream's line, scored as the daemon scores it (mined, its row scored, read by the log
    /// signals), then trained on: its score, the template it joined, and why it alerted, if it did.
    public mutating func next(line: Substring, timestamp: Int64? = nil) -> (score: SampleScore, template: UInt32, alert: LogAlert?) {
        let batch = pipeline.scoreLines([line], firstSequence: sequence, timestamps: timestamp.map { [$0] })
        while pipeline.trainStep() {}
        sequence += 1
        return (batch.sample(0), batch.templateIDs[0], batch.logAlerts[0])
    }
}
