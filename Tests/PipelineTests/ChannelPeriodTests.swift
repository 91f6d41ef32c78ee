import Foundation
import Learning
import Pipeline
import Testing

@Suite struct ChannelPeriodTests {
    /// Two channels repeating with periods 40 and 60 (and a little noise): each channel finds its
    /// own period. On the second channel, its swing halved and a slow ramp of 0.9 added over 150 rows
    /// (inside that channel's range of ±2) is surprising on that channel, while the same rows
    /// without it are not.
    @Test func eachChannelIsComparedWithItsOwnPeriod() throws {
        func run(ramp: Bool) -> (periods: [Int], quiet: Float, during: Float, channel: Int) {
            let s = ChannelPeriodSignal(channels: 2, span: 16, context: 0, setting: .auto, margin: 4, horizon: 5000, holdOff: 400)
            var r = RandomSource(seed: 3)
            var quiet = -Float.infinity, during = -Float.infinity, channel = -1
            for t in 0..<3000 {
                var x: [Float] = [
                    sinf(2 * .pi * Float(t) / 40) + 0.05 * r.normal(),
                    2 * sinf(2 * .pi * Float(t) / 60) + 0.05 * r.normal(),
                ]
                if ramp && (2500..<2650).contains(t) { x[1] = 0.5 * x[1] + 0.006 * Float(t - 2500) }
                let reading = x.withUnsafeBufferPointer { p in
                    var o = Observation(values: p.baseAddress!, dimension: 2, logError: 0, modelReady: true)
                    let reading = s.read(&o)
                    s.learn(o, anomalous: reading.strength >= 0.9)
                    return reading
                }
                if (2000..<2500).contains(t) { quiet = max(quiet, reading.surprise) }
                if (2500..<2650).contains(t) && reading.surprise > during { (during, channel) = (reading.surprise, s.lastChannel) }
            }
            return (s.periods, quiet, during, channel)
        }
        let plain = run(ramp: false), ramped = run(ramp: true)
        #expect(plain.periods == [40, 60])
        #expect(plain.quiet < 5 && plain.during < 5, "no ramp: \(plain.quiet), \(plain.during)")
        #expect(ramped.during > 8 && ramped.channel == 1, "the ramp: \(ramped.during) on channel \(ramped.channel)")
    }

    /// The section keeps each channel's period, values and statistics; a stream of another width
    /// refuses it; a check configured with another period starts afresh.
    @Test func theSectionRestoresEveryChannel() throws {
        let s = ChannelPeriodSignal(channels: 3, span: 8, context: 0, setting: .auto, horizon: 1000, holdOff: 100)
        for t in 0..<1000 {
            let x: [Float] = [sinf(Float(t) / 5), Float(t % 30), Float(t % 45) * 0.1]
            x.withUnsafeBufferPointer { p in
                var o = Observation(values: p.baseAddress!, dimension: 3, logError: 0, modelReady: true)
                _ = s.read(&o)
                s.learn(o, anomalous: false)
            }
        }
        #expect(s.periods == [31, 30, 45])
        var w = StateWriter()
        s.encode(&w)
        let copy = ChannelPeriodSignal(channels: 3, span: 8, context: 0, setting: .auto, horizon: 1000, holdOff: 100)
        var reader = StateReader(w.bytes)
        try copy.decode(&reader, version: ChannelPeriodSignal.stateVersion)
        #expect(copy.checks == s.checks && copy.low == s.low && copy.high == s.high)

        let narrower = ChannelPeriodSignal(channels: 2, span: 8, context: 0, setting: .auto, horizon: 1000, holdOff: 100)
        reader = StateReader(w.bytes)
        #expect(throws: StateError.self) { try narrower.decode(&reader, version: ChannelPeriodSignal.stateVersion) }
        let fixed = ChannelPeriodSignal(channels: 3, span: 8, context: 0, setting: .fixed(12), horizon: 1000, holdOff: 100)
        reader = StateReader(w.bytes)
        try fixed.decode(&reader, version: ChannelPeriodSignal.stateVersion)
        #expect(fixed.periods == [12, 12, 12])
    }

    /// On a running stream of three channels (periods 40, 50 and 70), one cycle of the third at 60%
    /// of its swing alerts from its period check: the alert names channel 2 and its period 70 (in
    /// the wire's Alert too). Without `channel_period` the chain has no such signal, and a univariate
    /// stream never gets one.
    @Test func aStreamOfSeveralChannelsAlertsFromOneChannelsPeriod() throws {
        func run(_ on: Bool) -> (StreamPipeline, [ScoredBatch]) {
            var settings = StreamConfiguration().resolved(dim: 3)
            settings.channelPeriod = on
            settings.threshold = 0.6
            settings.repeatWindow = 0
            settings.signals.removeAll { $0 == DiscordSignal.name }
            let p = StreamPipeline(name: "machine", settings: settings)
            var r = RandomSource(seed: 5)
            var out: [ScoredBatch] = []
            for t in 0..<3000 {
                let swing: Float = (2660..<2800).contains(t) ? 0.6 : 1
                let x = [
                    sinf(Float(t) * 2 * .pi / 40) + 0.02 * r.normal(), 2 * sinf(Float(t) * 2 * .pi / 50) + 0.02 * r.normal(),
                    swing * sinf(Float(t) * 2 * .pi / 70) + 0.02 * r.normal(),
                ]
                out.append(x.withUnsafeBufferPointer { p.score($0.baseAddress!, count: 1, firstSequence: UInt64(t)) })
                while p.trainStep() {}
            }
            return (p, out)
        }
        let (p, batches) = run(true)
        let on = batches.map { $0.sample(0) }
        let signal = try #require(p.chain.signal(ChannelPeriodSignal.self))
        #expect(signal.periods == [40, 50, 70])
        let odd = on[2660..<2820].filter { $0.alert && $0.fromPeriod }
        #expect(!odd.isEmpty && odd.allSatisfy { $0.period == 70 && $0.topFeatures.map(\.index) == [2] }, "\(odd.map(\.period))")
        let before = on[1500..<2660].filter { $0.alert && $0.fromPeriod }.count
        #expect(before <= 6, "\(before) period alerts over 1,160 ordinary rows")
        let alert = Wire.alert(odd[0], in: batches[Int(odd[0].sequence)])
        #expect(alert.period == 70 && alert.topFeatures.map(\.index) == [2])

        // The section travels in the stream's checkpoint; a stream restored without the setting
        // has no such signal.
        let restored = try StreamPipeline.restore(p.serialized(), settings: p.settings)
        #expect(restored.chain.signal(ChannelPeriodSignal.self)?.checks == signal.checks)
        var without = p.settings
        without.channelPeriod = false
        #expect(try StreamPipeline.restore(p.serialized(), settings: without).chain.signal(ChannelPeriodSignal.self) == nil)

        let (q, offBatches) = run(false)
        let off = offBatches.map { $0.sample(0) }
        #expect(q.chain.signal(ChannelPeriodSignal.self) == nil && !off.contains { $0.fromPeriod })
        var univariate = StreamConfiguration().resolved(dim: 1)
        univariate.channelPeriod = true
        #expect(StreamPipeline(name: "u", settings: univariate).chain.signal(ChannelPeriodSignal.self) == nil)
    }
}
