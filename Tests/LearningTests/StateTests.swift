import Testing

@testable import Learning

@Suite struct StateTests {
    /// CRC-32 eight bytes a step agrees with the published check value and with the byte-at-a-time
    /// form on every length and alignment around the step, and on slices and arrays alike.
    @Test func crc32SlicedAgreesWithTheByteAtATimeForm() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        func reference(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for b in bytes { crc = CRC32.table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
            return crc ^ 0xFFFF_FFFF
        }
        var random = RandomSource(seed: 7)
        let data = (0..<5002).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for length in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4999] {
            for start in 0..<3 {
                let slice = data[start..<(start + length)]
                #expect(CRC32.checksum(slice) == reference(Array(slice)), "length \(length) from \(start)")
            }
        }
        // A collection without contiguous storage takes the byte-at-a-time path, to the same value.
        #expect(CRC32.checksum(data.lazy.map { $0 }) == reference(data))
    }

    /// Tensors are read in one copy: the same values, and the reader's place after them.
    @Test func floatTensorsReadBackInOneCopy() throws {
        let source = FloatBuffer(count: 1001)
        for i in 0..<source.count { source[i] = Float(i) * 0.37 - 100 }
        var w = StateWriter()
        w.write(UInt8(9))
        w.write(source)
        w.write(UInt32(0xDEAD_BEEF))
        var r = StateReader(w.bytes)
        #expect(try r.read(UInt8.self) == 9)
        let back = FloatBuffer(count: 1001)
        try r.read(into: back)
        #expect((0..<1001).allSatisfy { back[$0] == source[$0] })
        #expect(try r.read(UInt32.self) == 0xDEAD_BEEF && r.remaining == 0)
        var short = StateReader(Array(w.bytes.prefix(1 + 8 + 4 * 1000)))
        _ = try short.read(UInt8.self)
        #expect(throws: StateError.self) { try short.read(into: back) }
    }
    /// Tensors are written in one copy, to the format's bytes: the count (UInt64), then each
    /// float's IEEE 754 bits, little-endian.
    @Test func floatTensorsAreWrittenAsTheFormatsBytes() {
        let values = FloatBuffer([1, -2.5, .leastNonzeroMagnitude])
        var w = StateWriter()
        w.write(values)
        #expect(w.bytes == [3, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0, 0x01, 0x00, 0x00, 0x00])
    }

    /// `prepare` leaves what was written as it was and the room it made in place: writing that
    /// much more does not move the bytes.
    @Test func preparedRoomTakesTheWritesThatFollow() {
        var w = StateWriter()
        w.write(UInt32(7))
        w.prepare(room: 1 << 20)
        #expect(w.bytes == [7, 0, 0, 0] && w.bytes.capacity >= 4 + (1 << 20))
        let before = w.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        w.write(FloatBuffer(count: (1 << 18) - 2))
        #expect(w.bytes.count == 4 + 8 + 4 * ((1 << 18) - 2))
        #expect(w.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == before)
    }

    /// A buffer is zero however its memory was used before (it comes from calloc, which writes
    /// zeros only where the memory is not fresh): small and large, after dirty ones of the same
    /// sizes were freed.
    @Test func aNewBufferIsZeroAfterDirtyOnesAreFreed() {
        for count in [1, 1000, 100_000, 4_000_000] {
            do {
                let dirty = FloatBuffer(count: count)
                dirty.pointer.update(repeating: .nan, count: count)
            }
            let fresh = FloatBuffer(count: count)
            #expect((0..<count).allSatisfy { fresh[$0] == 0 }, "count \(count)")
        }
    }

    func trainedAutoencoder(seed: UInt64) -> (Autoencoder, ReferenceReplay) {
        var c = AutoencoderConfiguration(inputDimension: 32)
        c.seed = seed
        c.optimiser.weightDecay = 1e-4
        c.optimiser.gradientClipNorm = 5
        let ae = Autoencoder(configuration: c)
        let replay = ReferenceReplay()
        for _ in 0..<50 {
            let x = replay.next()
            ae.observe(x, rows: 64)
            ae.trainStep(x, rows: 64)
        }
        return (ae, replay)
    }

    func trainedMoCo(seed: UInt64, reconstruction: Float = 0, batchNorm: Bool = false, mix: Float = 0) -> (MoCo, ReferenceReplay) {
        var c = MoCoConfiguration(inputDimension: 32)
        c.reconstruction = reconstruction
        c.batchNorm = batchNorm
        c.mix = mix
        c.queueSize = 256
        c.seed = seed
        c.augmentation.cropMinimumFraction = 0.6
        c.augmentation.scale = 0.1
        c.augmentation.channels = 2
        c.augmentation.timeWarp = 0.2
        c.augmentation.channelOffset = 0.1
        c.augmentation.spanMask = 0.2
        let m = MoCo(configuration: c)
        let replay = ReferenceReplay()
        let ids = (0..<64).map { Int64($0) }
        for _ in 0..<30 {
            let x = replay.next()
            m.observe(x, rows: 64)
            _ = ids.withUnsafeBufferPointer { m.trainStep(x, rows: 64, ids: $0.baseAddress) }
        }
        return (m, replay)
    }

    @Test func sameSeedGivesBitIdenticalTraining() {
        let (a, _) = trainedAutoencoder(seed: 7)
        let (b, _) = trainedAutoencoder(seed: 7)
        #expect(a.parameterValues == b.parameterValues)
        let (c, _) = trainedAutoencoder(seed: 8)
        #expect(a.parameterValues != c.parameterValues)
        let (m1, _) = trainedMoCo(seed: 7)
        let (m2, _) = trainedMoCo(seed: 7)
        #expect(m1.queryParameters == m2.queryParameters)
        #expect(m1.queueValues == m2.queueValues)
    }

    @Test func autoencoderRestoredFromBytesTakesExactlyTheSameNextStep() throws {
        let (original, replay) = trainedAutoencoder(seed: 9)
        let bytes = original.serialized()
        let restored = try Autoencoder(serialized: bytes)
        #expect(restored.serialized() == bytes, "round trip is bit-exact")
        #expect(restored.step == original.step)
        let x = replay.next()
        let l1 = original.trainStep(x, rows: 64)
        let l2 = restored.trainStep(x, rows: 64)
        #expect(l1.bitPattern == l2.bitPattern)
        #expect(original.serialized() == restored.serialized())
    }

    @Test(arguments: [(0, false, 0), (30, false, 0), (0, true, 0), (30, true, 0.25)] as [(Float, Bool, Float)])
    func mocoRestoredFromBytesTakesExactlyTheSameNextStep(reconstruction: Float, batchNorm: Bool, mix: Float) throws {
        let (original, replay) = trainedMoCo(seed: 10, reconstruction: reconstruction, batchNorm: batchNorm, mix: mix)
        let bytes = original.serialized()
        let restored = try MoCo(serialized: bytes)
        #expect(restored.serialized() == bytes)
        #expect(restored.queuePointer == original.queuePointer)
        let x = replay.next()
        let ids = (0..<64).map { Int64($0 + 1000) }
        // The augmentations draw from the restored random state, so the views, loss and update match.
        let l1 = ids.withUnsafeBufferPointer { original.trainStep(x, rows: 64, ids: $0.baseAddress) }
        let l2 = ids.withUnsafeBufferPointer { restored.trainStep(x, rows: 64, ids: $0.baseAddress) }
        #expect(l1.bitPattern == l2.bitPattern)
        #expect(original.serialized() == restored.serialized())
        #expect(restored.configuration.reconstruction == reconstruction && (restored.decoder == nil) == (reconstruction == 0))
        #expect(restored.configuration.batchNorm == batchNorm && restored.layout.isNormalised == batchNorm)
        #expect(restored.configuration.mix == mix)
    }

    /// With i-Mix the same seed trains another model, the share travels in the state, and what a
    /// daemon before it wrote (format 4) restores without a blend.
    @Test func mocoWithMixTrainsApartAndOlderFormatsRestoreWithoutIt() throws {
        let (plain, _) = trainedMoCo(seed: 15)
        #expect(try MoCo(serialized: plain.serialized(format: 4)).configuration == plain.configuration)
        let (mixed, _) = trainedMoCo(seed: 15, mix: 0.25)
        #expect(mixed.queryParameters != plain.queryParameters)
        let old = try MoCo(serialized: mixed.serialized(format: 4))
        #expect(old.configuration.mix == 0 && old.queryParameters == mixed.queryParameters)
        let restored = try MoCo(serialized: mixed.serialized())
        #expect(restored.configuration.mix == 0.25)
    }

    /// With batch normalisation the running statistics follow the batches, the published network is
    /// the folded one and gives the representation `embed` does, and what a daemon before it wrote
    /// (format 3) restores without it.
    @Test func mocoWithBatchNormPublishesTheFoldedEncoder() throws {
        let (plain, _) = trainedMoCo(seed: 14)
        #expect(try MoCo(serialized: plain.serialized(format: 3)).configuration == plain.configuration)
        let (m, replay) = trainedMoCo(seed: 14, batchNorm: true)
        let first = m.layout.layers[0], stats = try #require(first.normalisation)
        let running = m.queryParameters
        #expect((0..<first.outputs).contains { running[stats + $0] != 0 } && (0..<first.outputs).contains { running[stats + first.outputs + $0] != 1 })
        let (layout, weights) = m.exported
        #expect(!layout.isNormalised && layout.parameterCount == plain.parameterCount)
        let samples = Array(UnsafeBufferPointer(start: replay.next(), count: 64 * 32))
        let represented = m.embed(samples)
        // The folded encoder on the normalised samples, by hand: what a snapshot's reader computes.
        let work = NetworkWorkspace(layout: layout, capacity: 64)
        var normalised = samples
        normalised.withUnsafeMutableBufferPointer { m.normaliser.apply(samples, rows: 64, into: $0.baseAddress!) }
        let buffer = FloatBuffer(weights)
        normalised.withUnsafeBufferPointer {
            work.forward(parameters: buffer.pointer, input: $0.baseAddress!, batch: 64, layers: m.configuration.encoderWidths.count)
        }
        let fromSnapshot = Array(UnsafeBufferPointer(start: work.outputs[m.configuration.encoderWidths.count - 1].pointer, count: 64 * 64))
        #expect(zip(represented, fromSnapshot).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($0)) })
    }

    /// Without the reconstruction term a model trains as it did before the term existed (the
    /// decoder draws nothing from the seed's random stream), and what a daemon before it wrote
    /// (format 2) restores without the term.
    @Test func mocoWithoutTheTermIsUnchangedAndFormatTwoRestoresWithoutIt() throws {
        let (original, replay) = trainedMoCo(seed: 13)
        let restored = try MoCo(serialized: original.serialized(format: 2))
        #expect(restored.configuration == original.configuration && restored.decoder == nil)
        #expect(restored.queryParameters == original.queryParameters && restored.queueValues == original.queueValues)
        let x = replay.next()
        #expect(original.trainStep(x, rows: 64).bitPattern == restored.trainStep(x, rows: 64).bitPattern)
        #expect(original.queryParameters == restored.queryParameters)
        // With the term the same seed trains differently, and its decoder learns to rebuild samples.
        let (withTerm, more) = trainedMoCo(seed: 13, reconstruction: 30)
        #expect(withTerm.queryParameters != original.queryParameters)
        let probe = (0..<4).flatMap { _ in Array(UnsafeBufferPointer(start: more.next(), count: 64 * 32)) }
        let before = try #require(withTerm.reconstructionError(probe))
        for _ in 0..<150 { withTerm.trainStep(more.next(), rows: 64) }
        let after = try #require(withTerm.reconstructionError(probe))
        #expect(after < 0.6 * before, "reconstruction error \(before) → \(after)")
        #expect(original.reconstructionError(probe) == nil)
    }

    /// What a daemon before series augmentations wrote (MoCo format 1) restores: the same weights,
    /// queue and step, with the series settings off.
    @Test func mocoFormatOneRestoresWithTheSeriesSettingsOff() throws {
        let (original, _) = trainedMoCo(seed: 12)
        let restored = try MoCo(serialized: original.serialized(format: 1))
        #expect(restored.step == original.step && restored.queryParameters == original.queryParameters)
        #expect(restored.keyParameters == original.keyParameters && restored.queueValues == original.queueValues)
        var expected = original.configuration.augmentation
        expected.channels = 1  // format 1's crop was over the whole row: one channel
        expected.timeWarp = 0
        expected.channelOffset = 0
        expected.spanMask = 0
        #expect(restored.configuration.augmentation == expected && original.configuration.augmentation.channels == 2)
        #expect(throws: StateError.self) { try MoCo(serialized: original.serialized(format: MoCo.formatVersion + 1)) }
    }

    /// A checkpoint's batch and queue are not trusted: a MoCo blob of a few hundred KB that names a
    /// batch of 4,096 against a queue of 65,536 keys would allocate 1 GiB of logits (with a queue of
    /// a million, 16 GiB: the daemon killed at every start), and is refused before anything is built.
    @Test func aModelWhoseBatchWouldTakeMoreThanAllowedIsRefusedBeforeItIsBuilt() throws {
        func tiny(batch: Int) -> [UInt8] {
            var c = MoCoConfiguration(inputDimension: 1)
            (c.encoderWidths, c.headWidths, c.queueSize, c.batchSize) = ([1], [1], 1 << 16, batch)
            return MoCo(configuration: c).serialized()
        }
        let one = tiny(batch: 1), two = tiny(batch: 2)
        let field = try #require(one.indices.first { one[$0] != two[$0] })  // the batch size, little-endian
        var crafted = Array(one.dropLast(4))
        withUnsafeBytes(of: UInt32(4096).littleEndian) { crafted.replaceSubrange(field..<field + 4, with: $0) }
        withUnsafeBytes(of: CRC32.checksum(crafted).littleEndian) { crafted.append(contentsOf: $0) }
        let limit = 64 << 20
        #expect(throws: StateError.invalid("size: its batch would take 1074112512 bytes, more than \(limit)")) {
            try MoCo(serialized: crafted, maximumBytes: limit)
        }
        // The genuine model passes the same limit; an autoencoder is held to its own working bytes.
        #expect(try MoCo(serialized: one, maximumBytes: limit).configuration.batchSize == 1)
        let (ae, _) = trainedAutoencoder(seed: 12)
        let aeBytes = Autoencoder.workingBytes(ae.configuration)
        #expect(throws: StateError.self) { try Autoencoder(serialized: ae.serialized(), maximumBytes: aeBytes - 1) }
        #expect(try Autoencoder(serialized: ae.serialized(), maximumBytes: aeBytes).step == ae.step)
    }

    @Test func damagedOrForeignBytesAreRejectedWithAClearError() {
        let (ae, _) = trainedAutoencoder(seed: 11)
        var bytes = ae.serialized()
        bytes[bytes.count / 2] ^= 0x40
        #expect(throws: StateError.checksumMismatch) { try Autoencoder(serialized: bytes) }
        #expect(throws: StateError.self) { try Autoencoder(serialized: Array(ae.serialized().prefix(40))) }
        #expect(throws: StateError.truncated) { try Autoencoder(serialized: [1, 2]) }
        let (m, _) = trainedMoCo(seed: 11)
        #expect(throws: StateError.wrongKind(expected: "eddy.autoencoder")) { try Autoencoder(serialized: m.serialized()) }
    }
}
