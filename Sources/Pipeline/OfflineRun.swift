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
