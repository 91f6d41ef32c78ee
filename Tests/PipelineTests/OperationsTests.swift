import EddyProtocol
import Foundation
import Pipeline
import Testing

/// Samples of the Prometheus text format: `name{labels}` -> value.
func exposition(_ text: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        out[String(line[..<space])] = value
    }
    return out
}

/// Polls until `done` or `seconds` pass; true if `done`.
func eventually(_ seconds: Double, _ done: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try done() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return try done()
}

@Suite(.serialized) struct OperationsTests {
    @Test func metricsCountWhatTheDaemonDidAndNameEveryFamilyInTheCatalogue() throws {
        let daemon = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let http = try #require(daemon.httpEndpoint)
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)

        // 30 batches of 20 samples, one NaN batch of 5 and one with a bad name.
        for b in 0..<30 { try client.send(stream: "pumps", sequence: UInt64(b * 20), dim: 4, values: values(80, seed: b)) }
        try client.send(stream: "pumps", sequence: 600, dim: 4, values: [Float](repeating: .nan, count: 20))
        try client.send(stream: "a/b", sequence: 0, dim: 4, values: values(4, seed: 0))
        #expect(eventually(10) { daemon.samplesAccepted.load == 600 && daemon.messagesRejected.load == 2 && daemon.trainSteps.load > 0 })

        let (status, body) = try HTTPProbe.get(http, "/metrics")
        #expect(status == 200)
        let m = exposition(body)
        #expect(m["eddy_samples_accepted_total"] == 600)
        #expect(m["eddy_messages_received_total"] == 32)
        #expect(m["eddy_messages_rejected_total{code=\"non_finite\"}"] == 1)
        #expect(m["eddy_samples_rejected_total{code=\"non_finite\"}"] == 5)
        #expect(m["eddy_messages_rejected_total{code=\"bad_stream_name\"}"] == 1)
        #expect(m["eddy_messages_rejected_total{code=\"oversized\"}"] == 0)
        #expect(m["eddy_stream_samples_accepted_total{stream=\"pumps\"}"] == 600)
        #expect(m["eddy_stream_buffered_samples{stream=\"pumps\"}"] == Double(daemon.allStreams[0].status.buffered))
        #expect((m["eddy_train_steps_total"] ?? 0) > 0)
        #expect(m["eddy_streams"] == 1)
        #expect(m["eddy_up"] == 1)
        #expect(m["eddy_build_info{version=\"\(Version.daemon)\",wire=\"eddy.v1\"}"] == 1)
        #expect((m["process_resident_memory_bytes"] ?? 0) > 1e6)
        // Every scored run is timed once; 30 batches arrive in at most 30 runs.
        let runs = try #require(m["eddy_score_latency_seconds_count"])
        #expect(runs >= 1 && runs <= 30)
        #expect(m["eddy_score_latency_seconds_bucket{le=\"+Inf\"}"] == runs)
        #expect((m["eddy_train_step_duration_seconds_count"] ?? 0) > 0)

        // Every family is in the catalogue with its help, and every catalogued family is there.
        let families = Set(body.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        let catalogued = Set(DaemonMetrics.catalogue.map(\.name))
        #expect(families.subtracting(catalogued).isEmpty, "not catalogued: \(families.subtracting(catalogued))")
        // Log templates exist on log streams only; the handshake counter on every daemon.
        #expect(
            catalogued.subtracting(families)
                == ["eddy_stream_templates", "eddy_stream_lines_truncated_total", "eddy_stream_lines_repaired_total", "eddy_stream_templates_evicted_total"])
        for entry in DaemonMetrics.catalogue where families.contains(entry.name) {
            #expect(body.contains("# HELP \(entry.name) \(entry.help)\n# TYPE \(entry.name) \(entry.type)\n"))
            #expect(entry.name.hasPrefix("eddy_") || entry.name.hasPrefix("process_"))
            #expect(entry.name.hasSuffix("_total") == (entry.type == "counter"))
        }

        // A second scrape carries only what grew since the first.
        for b in 0..<5 { try client.send(stream: "pumps", sequence: UInt64(601 + b * 20), dim: 4, values: values(80, seed: b)) }
        #expect(eventually(10) { daemon.samplesAccepted.load == 700 })
        let again = exposition(try HTTPProbe.get(http, "/metrics").body)
        #expect(again["eddy_samples_accepted_total"] == 700)
        #expect(again["eddy_stream_samples_accepted_total{stream=\"pumps\"}"] == 700)
        #expect(again["eddy_messages_rejected_total{code=\"non_finite\"}"] == 1)

        #expect(try HTTPProbe.get(http, "/nothing").status == 404)
    }

    /// docs/operations.md's table is the operator's list of every metric: each catalogued family is a
    /// row with its type and help, each row a catalogued family, and the `code` label's values are
    /// every error code (from review: two families and `not_found` were missing).
    @Test func theOperatorsTableListsEveryMetricAndErrorCode() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/operations.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let rows = text.split(separator: "\n").filter { $0.hasPrefix("| `eddy_") || $0.hasPrefix("| `process_") }
        let named = Set(rows.map { String($0.split(separator: "`")[1]) })
        #expect(named == Set(DaemonMetrics.catalogue.map(\.name)), "\(named.symmetricDifference(DaemonMetrics.catalogue.map(\.name)))")
        for entry in DaemonMetrics.catalogue {
            let row = rows.first { $0.hasPrefix("| `\(entry.name)` |") }.map(String.init) ?? ""
            // The table may set a setting's name in code.
            let plain = row.replacingOccurrences(of: "`", with: "")
            #expect(row.hasPrefix("| `\(entry.name)` | \(entry.type) |") && plain.hasSuffix("| \(entry.help) |"), "\(entry.name): \(row)")
        }
        let codes = try #require(text.range(of: "`code` takes").map { String(text[$0.lowerBound...].prefix(400)) })
        for code in Eddy_V1_ErrorCode.allCases where code != .unspecified {
            #expect(codes.contains("`\(DaemonMetrics.label(code))`"), "\(code)")
        }
    }

    @Test func aStalledThreadMakesTheDaemonUnhealthyAndNotReady() throws {
        var c = testConfiguration()
        c.healthStallSeconds = 1
        let daemon = try Daemon(configuration: c, logger: quietLogger)
        _ = try daemon.start()
        defer { daemon.stop() }
        let http = try #require(daemon.httpEndpoint)
        #expect(try HTTPProbe.get(http, "/healthz").status == 200)
        #expect(try HTTPProbe.get(http, "/readyz").status == 200)
        #expect(daemon.health().threads.keys.sorted() == ["eddy-ingest", "eddy-snapshots", "eddy-trainer"])

        daemon.injectStall(into: "eddy-trainer")
        #expect(eventually(5) { (try? HTTPProbe.get(http, "/healthz").status) == 503 })
        let (status, body) = try HTTPProbe.get(http, "/healthz")
        #expect(status == 503)
        #expect(body.contains("\"stalled\":[\"eddy-trainer\"]"), "\(body)")
        #expect(try HTTPProbe.get(http, "/readyz").status == 503)
        #expect(exposition(try HTTPProbe.get(http, "/metrics").body)["eddy_up"] == 0)
        // The other threads still make progress.
        #expect(daemon.health().stalled == ["eddy-trainer"])
    }

    @Test func aStreamThatExpiresTakesItsSeriesWithIt() throws {
        var c = testConfiguration()
        c.streamIdleSeconds = 0.5
        let daemon = try Daemon(configuration: c, logger: quietLogger)
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let http = try #require(daemon.httpEndpoint)
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)
        try client.send(stream: "brief", sequence: 0, dim: 2, values: values(40, seed: 1))
        #expect(eventually(5) { daemon.samplesAccepted.load == 20 })
        #expect(try HTTPProbe.get(http, "/metrics").body.contains("stream=\"brief\""))
        #expect(eventually(5) { daemon.streamsExpired.load == 1 })
        let body = try HTTPProbe.get(http, "/metrics").body
        #expect(!body.contains("stream=\"brief\""))
        #expect(exposition(body)["eddy_streams_expired_total"] == 1)
        #expect(exposition(body)["eddy_samples_accepted_total"] == 20)
    }

    /// From review: a restored stream's per-stream counters started at the checkpoint's counts, so a
    /// restart after a kill took a series from 13,000 back to 10,000 (`increase()` reads that as
    /// 10,000 new samples), and its loss was NaN until it trained again. Now they count from the
    /// start, as every counter of a new process does, and the loss is absent until a step.
    @Test func aRestoredStreamsCountersStartAtZeroAndItsLossIsAbsentUntilItTrains() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var c = testConfiguration(dataDirectory: directory)
        c.snapshotEverySeconds = 60
        do {
            let first = try Daemon(configuration: c, logger: quietLogger)
            let client = try Client(try first.start())
            #expect(try client.awaitHeartbeat() != nil)
            try client.send(stream: "kept", sequence: 0, dim: 2, values: values(400, seed: 1))
            #expect(eventually(5) { first.samplesAccepted.load == 200 })
            // Every step it owes taken before the stop: owed steps are checkpointed, and the restored
            // daemon would take them at once (a loss before the test reads it; flaky on a busy machine).
            #expect(eventually(10) { first.allStreams.first.map { $0.status.pendingSteps == 0 } ?? false })
            first.stop()
        }
        let daemon = try Daemon(configuration: c, logger: quietLogger)
        #expect(daemon.allStreams.first?.accepted == 200, "restored")
        let endpoints = try daemon.start()
        defer { daemon.stop() }
        let http = try #require(daemon.httpEndpoint)
        let before = exposition(try HTTPProbe.get(http, "/metrics").body)
        #expect(before["eddy_stream_samples_accepted_total{stream=\"kept\"}"] == 0)
        #expect(before.keys.allSatisfy { !$0.hasPrefix("eddy_stream_loss") }, "\(before.keys.filter { $0.hasPrefix("eddy_stream_loss") })")
        let client = try Client(endpoints)
        #expect(try client.awaitHeartbeat() != nil)
        try client.send(stream: "kept", sequence: 200, dim: 2, values: values(200, seed: 2))
        #expect(eventually(5) { daemon.samplesAccepted.load == 100 && daemon.trainSteps.load > 0 })
        #expect(eventually(5) {
            let m = (try? HTTPProbe.get(http, "/metrics").body).map(exposition) ?? [:]
            return m["eddy_stream_samples_accepted_total{stream=\"kept\"}"] == 100
                && m["eddy_stream_loss{stream=\"kept\",model=\"autoencoder\"}"].map { $0.isFinite } == true
        })
    }

    /// From review: a daemon key under a section was "unknown", as if it did not exist; an endpoint
    /// without its transport was refused as "reachable beyond this machine".
    /// From review: a key set twice in a section took the second value without a word, so an
    /// operator who edited the first saw no effect. The same key in two sections is two settings.
    @Test func aKeySetTwiceInASectionIsAnErrorNamingBothLines() throws {
        #expect { try ConfigurationFile.parse("max_streams = 4\n# a note\nmax_streams = 5\n") } throws: {
            "\($0)" == "configuration line 3: max_streams is set twice in this section (first on line 1)"
        }
        #expect { try ConfigurationFile.parse("[stream.a]\ndim = 2\nthreshold = 0.8\n threshold=0.9\n") } throws: {
            "\($0)".hasSuffix("line 4: threshold is set twice in this section (first on line 3)")
        }
        // A value out of range names its key alone, and the line that set it (from review: "snapshot_every_steps
        // and checkpoints_kept must be >= 1, max_stream_name_bytes in 1...256", no line).
        #expect { try ConfigurationFile.parse("heartbeat_seconds = 0.2\nmax_stream_name_bytes = 300\n") } throws: {
            "\($0)" == "configuration line 2: max_stream_name_bytes must be in 1...256"
        }
        #expect { try ConfigurationFile.parse("checkpoints_kept = 0\n") } throws: { "\($0)" == "configuration line 1: checkpoints_kept must be at least 1" }
        let c = try ConfigurationFile.parse("[stream]\nthreshold = 0.9\n[stream.a]\nthreshold = 0.8\n[stream.b]\nthreshold = 0.7\n")
        #expect(c.streamDefaults.threshold == 0.9 && c.streams["a"]?.threshold == 0.8 && c.streams["b"]?.threshold == 0.7)
    }

    @Test func aMisplacedKeyAndAnEndpointWithoutItsTransportAreNamed() throws {
        #expect { try ConfigurationFile.parse("[stream]\nmax_streams = 10\n") } throws: {
            "\($0)".contains("max_streams: a daemon key: daemon keys go before the first section")
        }
        #expect { try ConfigurationFile.parse("[stream.a]\nmax_strems = 10\n") } throws: {
            "\($0)".hasSuffix("max_strems: unknown key")
        }
        #expect { try ConfigurationFile.parse("ingest = 127.0.0.1:7700\n") } throws: {
            "\($0)".contains("ingest 127.0.0.1:7700 is not an endpoint") && !"\($0)".contains("reachable")
        }
        let local = try ConfigurationFile.parse("ingest = ipc:///tmp/eddy-ingest\npublish = tcp://localhost:7701\n")
        #expect(local.publish == "tcp://localhost:7701" && Endpoint.bindable(local.publish) == "tcp://127.0.0.1:7701")
        #expect(Endpoint.bindable("tcp://[::1]:7701") == "tcp://[::1]:7701")
    }

    @Test func theHTTPEndpointStaysOnLoopbackUnlessTheOperatorSaysOtherwise() throws {
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("http = 0.0.0.0:7703\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("http = 10.1.2.3:7703\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("http = 127.0.0.1\n") }
        #expect(throws: ConfigurationError.self) { try ConfigurationFile.parse("health_stall_seconds = 0\n") }
        #expect(try ConfigurationFile.parse("http = 0.0.0.0:7703\nhttp_allow_remote = true\n").http == "0.0.0.0:7703")
        #expect(try ConfigurationFile.parse("http = \"\"\n").http == "")
        #expect(try ConfigurationFile.parse("http = [::1]:9000\n").http == "[::1]:9000")

        // Off: no server, no metrics.
        var c = testConfiguration()
        c.http = ""
        let daemon = try Daemon(configuration: c, logger: quietLogger)
        _ = try daemon.start()
        defer { daemon.stop() }
        #expect(daemon.httpEndpoint == nil && daemon.metrics == nil)
    }

    @Test func aPortThatIsTakenFailsTheStartWithTheReason() throws {
        let first = try Daemon(configuration: testConfiguration(), logger: quietLogger)
        _ = try first.start()
        defer { first.stop() }
        var c = testConfiguration()
        c.http = try #require(first.httpEndpoint)
        let second = try Daemon(configuration: c, logger: quietLogger)
        let error = #expect(throws: ConfigurationError.self) { _ = try second.start() }
        #expect("\(error!)".contains("cannot bind http \(c.http)"), "\(error!)")
    }
}
