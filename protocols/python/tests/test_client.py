"""The real pyzmq client against a real `eddy serve` on 127.0.0.1."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
import zlib

from eddy_client import HeartbeatParts, Producer, Refusals, Snapshot, Subscriber, fetch_snapshot, fit_head, pb, representations, sample_batch, topic

EDDY = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))

# The same bytes Tests/PipelineTests checks from Swift: SampleBatch{"s", 5, dim 2, count 1, [1, -2]}.
GOLDEN = bytes([0x0A, 0x01, 0x73, 0x10, 0x05, 0x18, 0x02, 0x20, 0x01,
                0x32, 0x08, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])


def test_sample_batch_encodes_to_the_golden_bytes():
    assert sample_batch("s", np.array([[1.0, -2.0]]), 5).SerializeToString() == GOLDEN


def test_a_representation_batch_decodes_from_the_golden_bytes():
    """The bytes Swift's ProtocolTests encode: stream "s", first_sequence 7, dim 2, count 1, model_version 3."""
    golden = bytes([0x0A, 0x01, 0x73, 0x10, 0x07, 0x18, 0x02, 0x20, 0x01, 0x28, 0x03,
                    0x32, 0x08, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])
    m = pb.RepresentationBatch.FromString(golden)
    assert (m.stream, m.first_sequence, m.dim, m.count, m.model_version) == ("s", 7, 2, 1, 3)
    assert representations(m).tolist() == [[1.0, -2.0]]


def test_a_discord_alert_decodes_from_the_golden_bytes():
    """The discord fields of an Alert as Swift's ProtocolTests encode them: discord, channel 1,
    window 64, kept its level (field 18)."""
    m = pb.Alert.FromString(bytes([0x50, 0x01, 0x58, 0x01, 0x60, 0x40, 0x90, 0x01, 0x01]))
    assert (m.discord, m.discord_channel, m.discord_window, m.discord_level) == (True, 1, 64, True)
    assert not pb.Alert.FromString(bytes([0x50, 0x01, 0x60, 0x20])).discord_level


def snapshot_message(edit=lambda m: None):
    """A two-layer snapshot of 3 inputs (4 hidden, 2 out), edited by `edit`, its checksum made to fit."""
    rng = np.random.default_rng(0)
    m = pb.ModelSnapshot(stream="s", input_dim=3, activations=[pb.ACTIVATION_RELU, pb.ACTIVATION_IDENTITY],
                         normaliser_mean=[0.0, 1.0, 2.0], normaliser_variance=[1.0, 1.0, 4.0], normaliser_epsilon=1e-5)
    for name, shape in [("layers.0.weight", (4, 3)), ("layers.0.bias", (4,)), ("layers.1.weight", (2, 4)), ("layers.1.bias", (2,))]:
        m.tensors.add(name=name, shape=list(shape), data=rng.standard_normal(shape).astype("<f4").tobytes())
    edit(m)
    crc = 0
    for t in m.tensors:
        crc = zlib.crc32(t.data, crc)
    m.checksum = crc
    return m


def test_a_snapshot_whose_parts_do_not_fit_is_refused():
    """A snapshot is run only if its layers chain from input_dim, its activations are known and its
    normaliser has input_dim values: numpy would otherwise broadcast a bias of shape [1] or a mean of
    one value without a word, or take an activation from a newer daemon for identity."""
    good = Snapshot.from_message(snapshot_message())
    assert good.forward(np.ones((5, 3))).shape == (5, 2)

    def bias_of_one(m):
        m.tensors[1].shape[:] = [1]
        m.tensors[1].data = np.zeros(1, "<f4").tobytes()

    def duplicate(m):
        m.tensors.add().CopyFrom(m.tensors[0])

    def missing(m):
        del m.tensors[3]

    def short_mean(m):
        m.normaliser_mean[:] = [0.0]

    def unknown_activation(m):
        m.activations[1] = 7

    def wrong_count(m):
        m.tensors[0].shape[:] = [4, 4]

    def input_dim(m):
        m.input_dim = 4

    for edit in [bias_of_one, duplicate, missing, short_mean, unknown_activation, wrong_count, input_dim]:
        with pytest.raises(ValueError):
            Snapshot.from_message(snapshot_message(edit))
    with pytest.raises(ValueError, match="checksum"):
        m = snapshot_message()
        m.checksum ^= 1
        Snapshot.from_message(m)
    with pytest.raises(ValueError, match="autoencoder"):
        fetch_snapshot("tcp://127.0.0.1:1", "s", model="MoCo")


def sensors(n, dim=8, seed=0, start=0):
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + n)[:, None]
    mix = np.random.default_rng(99).uniform(-1, 1, size=(2, dim))
    base = np.sin(2 * np.pi * t / 50) * mix[0] + np.sin(2 * np.pi * t / 170) * mix[1]
    return (10 * base + 3 + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)


def wait_scores(sub, stream, first_sequence, timeout=30.0):
    """The ScoreBatch of `stream` that starts at `first_sequence` (within `timeout` seconds: other
    topics, heartbeats among them, keep coming, so each recv's own timeout would never fire)."""
    end = time.monotonic() + timeout
    while True:
        assert time.monotonic() < end, f"no scores for {stream} from {first_sequence} within {timeout} s"
        got = sub.recv(timeout_ms=5000)
        assert got is not None, f"no scores for {stream} from {first_sequence}"
        if got[0] == f"score/{stream}/" and got[1].first_sequence == first_sequence:
            return got[1]


def wait_heartbeat(sub, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = sub.recv(timeout_ms=200)
        if got and got[0] == "hb/":
            return got[1]
    raise AssertionError("no heartbeat")


def settled(sub, endpoint, name, model="autoencoder", accept=lambda status: True, timeout=60.0):
    """Once training has stopped: the stream's heartbeat status and the snapshot of its last step.
    The trainer owes no step, two heartbeats in a row give the model the same version, and the
    snapshot served is that version (a trainer starved by a busy machine owes steps, and a snapshot
    still being made does not pass)."""
    end = time.monotonic() + timeout
    last = None
    while True:
        assert time.monotonic() < end, f"training of {name} did not settle within {timeout} s"
        hb = wait_heartbeat(sub)
        status = next((s for s in hb.streams if s.stream == name), None)
        if status is None or not accept(status) or status.pending_steps > 0:
            last = None
            continue
        version = getattr(status, f"{model}_version")
        try:
            snapshot = fetch_snapshot(endpoint, name, model)
        except LookupError:
            last = None
            continue
        if version > 0 and version == last and snapshot.message.version == version:
            return status, snapshot
        last = version


def wait_snapshot(endpoint, stream, model="autoencoder", accept=lambda message: True, timeout=10.0):
    """The stream's snapshot once the daemon has one that `accept`s: a step counted in a heartbeat
    is published a moment later."""
    end = time.monotonic() + timeout
    while True:
        try:
            snapshot = fetch_snapshot(endpoint, stream, model)
            if accept(snapshot.message):
                return snapshot
        except LookupError:
            pass
        assert time.monotonic() < end, f"no {model} snapshot of {stream} within {timeout} s"
        time.sleep(0.1)


def test_ten_thousand_samples_get_ten_thousand_scores_and_numpy_reproduces_the_errors(start_daemon):
    daemon = start_daemon()
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"]) as sub:
        wait_heartbeat(sub)
        data = sensors(10_000)
        for i in range(0, 10_000, 100):
            producer.send("pump", data[i:i + 100])
        seen = []
        end = time.monotonic() + 60
        while len(seen) < 10_000 and time.monotonic() < end:
            got = sub.recv(timeout_ms=200)
            if got and got[0] == "score/pump/":
                batch = got[1]
                assert len(batch.scores) == len(batch.errors) == batch.count
                seen.extend(range(batch.first_sequence, batch.first_sequence + batch.count))
        assert sorted(seen) == list(range(10_000)) and len(seen) == len(set(seen))

        # Let the trainer finish what it owes, then take the snapshot taken after its last step.
        stream, snapshot = settled(sub, ep["snapshots"], "pump", accept=lambda s: s.accepted == 10_000)
        assert snapshot.message.version == stream.autoencoder_version and snapshot.message.samples_seen == 10_000
        assert snapshot.message.input_dim == 8 and len(snapshot.weights) == 4

        # Probe samples are scored by exactly that model and those normaliser statistics.
        probe = sensors(256, seed=5, start=10_000)
        probe[7, 3] += 50.0
        probe[200, 5] -= 50.0
        producer.send("pump", probe)
        batch = wait_scores(sub, "pump", 10_000)
        assert batch.model_version == snapshot.message.version
        daemon_errors = np.array(batch.errors, dtype=np.float32)
        numpy_errors = snapshot.reconstruction_errors(probe)
        np.testing.assert_allclose(numpy_errors, daemon_errors, rtol=1e-4, atol=1e-6)
        assert daemon_errors[7] > 20 * np.median(daemon_errors)

        # The first outlier may fall in the calibrator's warm-up (if the burst of 10,000 arrived
        # before the model had trained, their errors did not count: the probe's first 100 calibrate).
        # The second alerts on its own topic: beyond sensor 5's range, which the alert names.
        assert not batch.warming_up[200] and batch.alerts[200]
        alert = None
        end = time.monotonic() + 10
        while alert is None and time.monotonic() < end:
            got = sub.recv(timeout_ms=1000)
            if got and got[0] == "alert/pump/" and got[1].score.sequence == 10_200:
                alert = got[1]
        assert alert is not None, "no alert for the outlier"
        assert alert.beyond_range and alert.period == 0 and alert.score.score == 1.0
        assert alert.top_features[0].index == 5 and alert.top_features[0].share == 1.0

        moco = fetch_snapshot(ep["snapshots"], "pump", "moco")
        assert moco.representation(probe).shape == (256, 64)
    assert daemon.terminate()[0] == 0


def test_bad_input_is_reported_on_the_error_topic(start_daemon):
    daemon = start_daemon()
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"], ["error/", "hb/"]) as sub:
        wait_heartbeat(sub)
        producer.send("s", np.zeros((4, 3), np.float32))
        producer.socket.send_multipart([b"s", b"\xff\xff\xff\x07"])
        producer.send("s", np.zeros((4, 5), np.float32))
        codes = []
        while len(codes) < 2:
            got = sub.recv(timeout_ms=5000)
            assert got is not None
            if got[0] == "error/s/":
                codes.append(got[1].code)
        assert codes == [pb.ERROR_CODE_UNDECODABLE, pb.ERROR_CODE_DIM_MISMATCH]
    daemon.terminate()


def test_sigterm_checkpoints_and_a_restart_continues_steps_and_versions(start_daemon, tmp_path):
    data_dir = tmp_path / "state"
    daemon = start_daemon(data_dir)
    with Producer(daemon.endpoints["ingest"]) as producer, Subscriber(daemon.endpoints["publish"], ["hb/"]) as sub:
        wait_heartbeat(sub)
        for i in range(20):
            producer.send("s", sensors(100, dim=4, start=100 * i))
        end = time.monotonic() + 60
        while True:
            assert time.monotonic() < end, "the 2,000 samples were not all accepted and trained on"
            hb = wait_heartbeat(sub)
            if hb.samples_accepted == 2000 and hb.train_steps > 0:
                break
        version = wait_snapshot(daemon.endpoints["snapshots"], "s").message.version
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 10
    assert list(data_dir.glob("checkpoint-*.eddy"))

    again = start_daemon(data_dir)
    with Subscriber(again.endpoints["publish"], ["hb/"]) as sub, Producer(again.endpoints["ingest"]) as producer:
        hb = wait_heartbeat(sub)
        stream = next(s for s in hb.streams if s.stream == "s")
        assert stream.accepted == 2000
        assert stream.train_steps >= version > 0
        # The restored models are served at once, before any new sample (steps the stream still
        # owed may have moved them on a little since).
        restored = wait_snapshot(again.endpoints["snapshots"], "s", timeout=5).message
        assert restored.version >= version and restored.samples_seen == 2000
        assert wait_snapshot(again.endpoints["snapshots"], "s", "moco", timeout=5).message.samples_seen == 2000
        producer.send("s", sensors(500, dim=4, start=2000), sequence=2000)
        end = time.monotonic() + 60
        while True:
            assert time.monotonic() < end, "the restored stream took no step"
            hb = wait_heartbeat(sub)
            stream = next(s for s in hb.streams if s.stream == "s")
            if stream.train_steps > version:
                break
    end = time.monotonic() + 10
    while True:
        later = fetch_snapshot(again.endpoints["snapshots"], "s").message
        # Steps the stream still owed when it stopped may be taken (and published) before the new
        # samples count: wait for the snapshot that has seen them.
        if (later.version > version and later.samples_seen == 2500) or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert later.version > version and later.samples_seen == 2500
    assert again.terminate()[0] == 0


def test_a_head_fitted_on_a_few_labels_over_the_published_encoder_classifies_regimes(start_daemon):
    """Two operating regimes of the same machine (idle, loaded), streamed unlabeled; a subscriber
    fits a head on 20 labelled samples over the MoCo snapshot and classifies fresh ones."""
    rng = np.random.default_rng(7)

    def regime(n, loaded, start):
        x = sensors(n, dim=8, seed=int(rng.integers(1 << 30)), start=start)
        if loaded:
            x[:, :4] += 8.0   # four sensors run higher under load
            x[:, 6] *= 0.3    # and one barely moves
        return x

    daemon = start_daemon()
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"], ["hb/"]) as sub:
        wait_heartbeat(sub)
        for i in range(40):
            producer.send("machine", regime(100, loaded=i % 2 == 1, start=100 * i))
        # Let the trainer take every step it is owed, then use the MoCo snapshot taken after them.
        _, snapshot = settled(sub, ep["snapshots"], "machine", "moco", accept=lambda s: s.accepted == 4000)
    # Ten labels per regime, spread over the machine's cycles.
    labelled = np.concatenate([regime(1000, False, 9000)[::100], regime(1000, True, 10000)[::100]])
    head = fit_head(snapshot, labelled, ["idle"] * 10 + ["loaded"] * 10)
    fresh_idle, fresh_loaded = regime(200, False, 20000), regime(200, True, 20500)
    accuracy = (np.mean(head.predict(fresh_idle) == "idle") + np.mean(head.predict(fresh_loaded) == "loaded")) / 2
    assert accuracy > 0.95, accuracy
    probabilities = head.probabilities(fresh_idle)
    assert probabilities.shape == (200, 2) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    daemon.terminate()


@pytest.mark.parametrize("transform", ["none", "log"])
def test_a_multivariate_window_is_built_the_same_in_numpy(start_daemon, transform):
    # Each row of a three-channel stream is scored with its last 4 rows at scales 1 and 2; the
    # snapshot's inputs() builds the same rows (under the stream's transform, as its snapshot
    # says), so numpy reproduces the daemon's errors.
    daemon = start_daemon(
        extra_config=f"[stream.win]\nmultivariate_window = 4\nwindow_scales = 1, 2\ntransform = {transform}\n")
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"]) as sub:
        wait_heartbeat(sub)
        data = sensors(3000)[:, :3] * 100
        producer.send("win", data)
        stream, snapshot = settled(sub, ep["snapshots"], "win", accept=lambda s: s.accepted == 3000)
        m = snapshot.message
        assert m.window == 4 and list(m.window_scales) == [1, 2] and m.input_dim == 4 * 2 * 3
        assert m.input_transform == (pb.INPUT_TRANSFORM_LOG if transform == "log" else pb.INPUT_TRANSFORM_NONE)
        probe = sensors(300, seed=9, start=3000)[:, :3] * 100
        producer.send("win", probe)
        batch = wait_scores(sub, "win", 3000)
        assert batch.model_version == m.version
        rows = snapshot.inputs(np.concatenate([data[-7:], probe]))
        assert rows.shape == (300, 24)
        np.testing.assert_allclose(snapshot.reconstruction_errors(rows), np.array(batch.errors, dtype=np.float32),
                                   rtol=1e-4, atol=1e-6)
    assert daemon.terminate()[0] == 0


def wait_warm(sub, name, accepted, timeout=60.0):
    """Waits (by heartbeats) until stream `name` has accepted `accepted` samples and finished warming up."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"the stream did not take its {accepted:,} rows and finish warming up"
        hb = wait_heartbeat(sub)
        stream = next((s for s in hb.streams if s.stream == name), None)
        if stream is not None and stream.accepted == accepted and not stream.warming_up:
            return


def first_discord_alert(start_daemon, windows, rows, changed):
    """The first alert of a two-channel stream scored by the discord signal alone, with `windows`
    (its discord settings): 3,000 normal rows, then 300 whose rows `changed` differ; and what
    `eddy watch` printed meanwhile."""
    daemon = start_daemon(extra_config="[stream.shape]\nsignals = discord\n" + windows)
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"]) as sub:
        wait_heartbeat(sub)
        for start in range(0, 3000, 250):
            producer.send("shape", rows(start, 250, ()).astype(np.float32))
        wait_warm(sub, "shape", 3000)
        watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--stream", "shape", "--seconds", "6"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            # Its first line (a heartbeat or a snapshot): it has subscribed before the change is sent.
            first_line = watch.stdout.readline()
            assert first_line, "eddy watch printed nothing"
            producer.send("shape", rows(3000, 300, changed).astype(np.float32))
            alerts = []
            end = time.monotonic() + 10
            while time.monotonic() < end:
                got = sub.recv(timeout_ms=500)
                if got and got[0] == "alert/shape/":
                    alerts.append(got[1])
                if got and got[0] == "score/shape/" and got[1].first_sequence == 3000:
                    end = min(end, time.monotonic() + 1)  # its alerts are published with it
            watched = first_line + watch.communicate(timeout=30)[0]
        finally:
            watch.kill()
    assert daemon.terminate()[0] == 0
    assert alerts, "no alert for the change"
    assert alerts[0].score.sequence in changed or alerts[0].score.sequence - 16 in changed, [a.score.sequence for a in alerts]
    return alerts[0], watched


def test_a_change_of_shape_on_one_channel_alerts_from_the_discord_signal(start_daemon):
    # Two sine channels; for 60 rows channel 1 runs at three times its frequency, inside its usual
    # range. The alert names the discord signal, the channel and the window (its mean removed).
    rng = np.random.default_rng(4)

    def rows(start, n, fast):
        t = np.arange(start, start + n)
        period = np.where(np.isin(t, fast), 13.0, 40.0)
        phase = np.cumsum(2 * np.pi / period) + 2 * np.pi * start / 40.0
        return np.stack([np.sin(2 * np.pi * t / 30), np.sin(phase)], axis=1) + 0.03 * rng.standard_normal((n, 2))

    # Period windows off: this test reads the fixed windows (a stream of two channels also gets a
    # window of each channel's period, which can be the one to name the change first).
    first, watched = first_discord_alert(start_daemon, "discord_window = 16\ndiscord_level_window = 0\n"
                                         "discord_period_channels = 1\n", rows, range(3100, 3160))
    assert first.discord and first.discord_channel == 1 and first.discord_window == 16 and not first.discord_level
    assert f"ALERT    shape seq {first.score.sequence} " in watched and "channel 1's last 16 values unlike any before" in watched, watched
    assert not first.beyond_range and first.period == 0


def test_a_new_level_on_one_channel_alerts_from_a_level_window(start_daemon):
    # Channel 1 is a square wave between 0 and 1 (40 rows each); from row 3120, where it would fall
    # to 0, it moves between 1 and 2 instead: a plateau at 1 twice as long, then the same steps a
    # level up. A centred window has seen every step and plateau before; a window that keeps its
    # level has never been at 2. The alert says which window it was.
    rng = np.random.default_rng(5)

    def rows(start, n, shifted):
        t = np.arange(start, start + n)
        square = ((t // 40) % 2).astype(np.float64) + np.isin(t, shifted)
        return np.stack([np.sin(2 * np.pi * t / 30), square], axis=1) + 0.03 * rng.standard_normal((n, 2))

    first, watched = first_discord_alert(start_daemon, "discord_window = 16\ndiscord_level_window = 32\n"
                                         "discord_period_channels = 1\n", rows, range(3120, 3300))
    assert first.discord and first.discord_channel == 1 and first.discord_window == 32 and first.discord_level
    assert f"ALERT    shape seq {first.score.sequence} " in watched, watched
    assert "channel 1's last 32 values, level and all, unlike any before" in watched, watched
    assert not first.beyond_range and first.period == 0


def test_streams_beyond_the_memory_budget_or_max_dim_are_refused_with_their_cost(start_daemon):
    # 16M holds two default streams of dim 32 (about 6.9 MB each) but not a third, nor one of dim
    # 700 (about 44 MB); a dim over max_dim is refused before any stream is looked up. No refused
    # stream is created, and the streams that fit keep being scored.
    daemon = start_daemon(daemon_config="memory_budget = 16M\n")
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"], ["error/", "hb/", "score/"]) as sub:
        wait_heartbeat(sub)
        producer.send("a", sensors(10, dim=32))
        producer.send("b", sensors(10, dim=32))
        producer.send("c", sensors(10, dim=32))
        producer.send("wide", np.zeros((1, 700), np.float32))
        producer.send("huge", np.zeros((1, 5000), np.float32))
        errors = {}
        end = time.monotonic() + 10
        while len(errors) < 3 and time.monotonic() < end:
            got = sub.recv(timeout_ms=1000)
            if got and got[0].startswith("error/"):
                errors[got[1].stream] = got[1]
        assert errors["c"].code == pb.ERROR_CODE_OVER_BUDGET and "would take 6.9 MB" in errors["c"].message
        assert "of the memory_budget 16.0 MB is taken by 2 streams" in errors["c"].message
        assert errors["wide"].code == pb.ERROR_CODE_OVER_BUDGET and "would take 44." in errors["wide"].message
        assert errors["huge"].code == pb.ERROR_CODE_OVERSIZED and "exceeds max_dim 4096" in errors["huge"].message
        hb = wait_heartbeat(sub)
        assert sorted(s.stream for s in hb.streams) == ["a", "b"]
        producer.send("a", sensors(10, dim=32, start=10))
        assert wait_scores(sub, "a", 10).count == 10
    assert daemon.terminate()[0] == 0


def test_the_memory_estimate_covers_what_a_stream_allocates():
    # `eddy bench memory` builds streams of several widths, scores and trains them, and reports what
    # the allocator handed out beside the estimate the budget charges: never under it, at most a
    # quarter over.
    import json
    import subprocess
    from conftest import ROOT
    import os
    binary = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))
    out = subprocess.run([binary, "bench", "memory", "--dims", "1,32,700,2000", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    for dim in (1, 32, 700, 2000):
        ratio = report[f"dim_{dim}_estimate_over_allocated"]
        assert 1.0 <= ratio <= 1.25, (dim, report)
    sizes = [report[f"dim_{dim}_allocated_bytes"] for dim in (32, 700, 2000)]
    assert sizes == sorted(sizes) and sizes[-1] > 10 * sizes[0], "a stream's cost grows with its dim"
    # A log stream filled to its 1,000 templates (3,000 distinct messages, evictions included): the
    # estimate bounds what it takes (it allows for templates of 128 tokens filling max_line_bytes;
    # these have 6 to 13 words). With such lines, the most a template was measured to hold, it
    # still does.
    assert report["log_templates"] == 1000
    assert 1.0 <= report["log_estimate_over_allocated"] <= 8.0, report
    out = subprocess.run([binary, "bench", "memory", "--dims", "1", "--log-templates", "200", "--worst-lines", "--json"],
                         capture_output=True, text=True, check=True).stdout
    worst = json.loads(out)
    assert 1.0 <= worst["log_estimate_over_allocated"] <= 2.0, worst
    # With publish_representations a stream also keeps an ingest-side MoCo: charged as well.
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write("[stream]\npublish_representations = true\n")
        conf.flush()
        out = subprocess.run([binary, "bench", "memory", "--dims", "1,700", "--log-templates", "0", "--config", conf.name,
                              "--json"], capture_output=True, text=True, check=True).stdout
    with_representations = json.loads(out)
    for dim in (1, 700):
        assert 1.0 <= with_representations[f"dim_{dim}_estimate_over_allocated"] <= 1.25, (dim, with_representations)
        assert with_representations[f"dim_{dim}_allocated_bytes"] > report[f"dim_{dim}_allocated_bytes"]
    # Channels that repeat strongly keep a lagged maximum too (discord_peak_lag): still covered.
    out = subprocess.run([binary, "bench", "memory", "--dims", "1,8", "--log-templates", "0", "--cycling", "--json"],
                         capture_output=True, text=True, check=True).stdout
    cycling = json.loads(out)
    for dim in (1, 8):
        assert cycling[f"dim_{dim}_lagged_channels"] == dim, cycling
        assert 1.0 <= cycling[f"dim_{dim}_estimate_over_allocated"] <= 1.25, (dim, cycling)


def test_values_that_would_poison_a_stream_are_refused_and_no_score_or_weight_turns_nan(start_daemon):
    # A batch of float32's largest values and one of 1e20 are refused (VALUE_TOO_LARGE, naming the
    # first); one of 1e14, within max_abs_value, is taken. Afterwards every score is finite and the
    # published autoencoder's weights and normaliser are finite too.
    daemon = start_daemon()
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"], ["error/", "hb/", "score/"]) as sub:
        wait_heartbeat(sub)
        producer.send("p", sensors(1000, dim=4))
        big = np.full((8, 4), np.finfo(np.float32).max, np.float32)
        big[::2] *= -1
        producer.send("p", big, sequence=5000)
        producer.send("p", np.full((8, 4), 1e20, np.float32), sequence=6000)
        producer.send("p", np.full((8, 4), 1e14, np.float32), sequence=1000)
        producer.send("p", sensors(2000, dim=4, start=1008), sequence=1008)
        errors, scores = [], {}
        end = time.monotonic() + 30
        while (len(errors) < 2 or len(scores) < 3008) and time.monotonic() < end:
            got = sub.recv(timeout_ms=1000)
            if got and got[0] == "error/p/":
                errors.append(got[1])
            elif got and got[0] == "score/p/":
                for i, s in enumerate(got[1].scores):
                    scores[got[1].first_sequence + i] = (s, got[1].errors[i])
        assert [e.code for e in errors] == [pb.ERROR_CODE_VALUE_TOO_LARGE] * 2
        assert "value 0 of sample 0 is" in errors[0].message and "beyond max_abs_value" in errors[0].message
        assert len(scores) == 3008 and all(np.isfinite(s) and np.isfinite(e) for s, e in scores.values())
        snapshot = wait_snapshot(ep["snapshots"], "p", accept=lambda m: m.samples_seen >= 3008)
        assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in zip(snapshot.weights, snapshot.biases))
        assert np.isfinite(snapshot.mean).all() and np.isfinite(snapshot.variance).all()
    assert daemon.terminate()[0] == 0


def test_heartbeats_show_skipped_steps_and_quarantined_samples(start_daemon):
    # A stream that earns far more steps than it may owe (max_pending_steps 1, replay_ratio 64) skips
    # most of them; with learn_surprise_limit set, a burst of outliers is scored but kept out of
    # learning. Both counts reach the heartbeat.
    daemon = start_daemon(extra_config="[stream.q]\nreplay_ratio = 64\nmax_pending_steps = 1\nlearn_surprise_limit = 3\n"
                                       "range_margin = -1\n")
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"], ["hb/"]) as sub:
        wait_heartbeat(sub)
        end = time.monotonic() + 60
        # In small batches, a moment apart: each earns more than the one step the stream may owe,
        # and the trainer takes that one, so the stream leaves warm-up (20 steps) with most skipped.
        # A trainer starved by a busy machine takes fewer: more batches follow until it is warm.
        data, sent = sensors(30_000, dim=4), 0
        while True:
            for _ in range(12):
                producer.send("q", data[sent:sent + 50])
                sent += 50
                time.sleep(0.03)
            assert sent < len(data), "the stream did not leave warm-up"
            hb = wait_heartbeat(sub)
            q = next((s for s in hb.streams if s.stream == "q"), None)
            if q and not q.warming_up:
                break
            assert time.monotonic() < end, "the stream did not leave warm-up"
        outliers = sensors(50, dim=4, start=sent)
        outliers[:, 1] += 40
        producer.send("q", outliers)
        while True:
            hb = wait_heartbeat(sub)
            q = next((s for s in hb.streams if s.stream == "q"), None)
            if q and q.accepted == sent + 50 and q.skipped_steps > 0 and q.quarantined > 0:
                break
            assert time.monotonic() < end, f"skipped {q and q.skipped_steps}, quarantined {q and q.quarantined}"
        assert q.skipped_steps > q.train_steps, "most earned steps are skipped"
        assert 0 < q.quarantined <= 50
    assert daemon.terminate()[0] == 0


def test_the_daemon_takes_every_descriptor_its_hard_limit_allows(start_daemon):
    # Started with a soft limit of 256 open files, the daemon raises it to the hard limit at once
    # (every idle connection holds a descriptor; a soft 1,024 was exhausted by a thousand peers).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        daemon = start_daemon()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = open(f"/proc/{daemon.process.pid}/limits").read()
    line = next(l for l in limits.splitlines() if l.startswith("Max open files"))
    daemon_soft, daemon_hard = line.split()[3:5]
    assert daemon_soft == daemon_hard == (str(hard) if hard != resource.RLIM_INFINITY else "unlimited")
    assert daemon.terminate()[0] == 0


def test_published_representations_are_the_snapshots_encoder_on_the_scored_samples(start_daemon):
    """`publish_representations`: rep/<stream>/ carries each sample's representation, computed by
    the MoCo version it names; numpy reproduces it from that version's snapshot."""
    daemon = start_daemon(extra_config="publish_representations = true\n")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1050, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32) + 5
    with Subscriber(daemon.endpoints["publish"], ["hb/", "rep/s/"]) as sub, Producer(daemon.endpoints["ingest"]) as p:
        wait_heartbeat(sub)
        p.send("s", x[:1000])
        # The trainer has taken every step the batch earned and the snapshot of the last is served
        # (it owes none: a trainer starved by a busy machine may pause for a few heartbeats).
        status, snap = settled(sub, daemon.endpoints["snapshots"], "s", "moco", accept=lambda s: s.accepted == 1000)
        steps = status.moco_version
        p.send("s", x[1000:])
        got = []
        end = time.monotonic() + 10
        while sum(len(g[1]) for g in got) < 50 and time.monotonic() < end:
            message = sub.recv(timeout_ms=200)
            if message and message[0] == "rep/s/" and message[1].first_sequence >= 1000:
                got.append((message[1], representations(message[1])))
    assert got and sum(len(r) for _, r in got) == 50
    assert all(m.model_version == steps and m.dim == 64 for m, _ in got)
    published = np.concatenate([r for _, r in sorted(got, key=lambda g: g[0].first_sequence)])
    expected = snap.representation(x[1000:])
    assert np.allclose(published, expected, rtol=1e-4, atol=1e-4), np.abs(published - expected).max()


def test_a_script_that_ends_after_sending_has_sent_everything(start_daemon):
    """`send` queues; leaving `with Producer(...)` waits until the queue has gone to the daemon (at
    most `linger_ms`), so a script that sends and ends loses nothing. (Before, every producer used
    pyzmq's global context, which the end of a script does not terminate: what was still queued
    when the interpreter exited was lost, most of 400,000 samples in a review's run.)"""
    daemon = start_daemon()
    ep = daemon.endpoints
    script = (f"import sys\nsys.path.insert(0, {str(ROOT / 'protocols' / 'python')!r})\n"
              "import numpy as np\nfrom eddy_client import Producer\n"
              "x = np.random.default_rng(0).normal(size=(4096, 16)).astype(np.float32)\n"
              f"with Producer({ep['ingest']!r}) as p:\n"
              "    for i in range(40):\n        p.send('bulk', x)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    accepted, end = 0, time.monotonic() + 60
    with Subscriber(ep["publish"], ["hb/"]) as sub:
        while accepted < 40 * 4096 and time.monotonic() < end:
            status = next((s for s in wait_heartbeat(sub).streams if s.stream == "bulk"), None)
            accepted = status.accepted if status else 0
    assert accepted == 40 * 4096
    assert daemon.terminate()[0] == 0


def test_a_snapshot_reproduces_its_versions_scores_when_samples_came_after_its_step(start_daemon):
    """A model version is its weights and the normaliser its step was trained with. Samples that
    arrive after the step, too few to earn another, move the stream's statistics but not the
    version's: the next batch, scored by that version, is reproduced from its snapshot, errors and
    representations. (Before, the scorer applied the statistics as they stood at the batch, which
    no snapshot carried: a snapshot on the timer reproduced its version's scores only where no
    sample had come since the step; from review.)"""
    daemon = start_daemon(extra_config="publish_representations = true\n")
    ep = daemon.endpoints
    x = sensors(460, dim=6)
    with Subscriber(ep["publish"], ["hb/", "score/s/", "rep/s/"]) as sub, Producer(ep["ingest"]) as p:
        wait_heartbeat(sub)
        p.send("s", x[:400])  # 50 steps of each model (replay_ratio 8 per 64 samples), none owed after
        status, ae = settled(sub, ep["snapshots"], "s", accept=lambda s: s.accepted == 400)
        moco = wait_snapshot(ep["snapshots"], "s", "moco", accept=lambda m: m.version == status.moco_version)
        p.send("s", x[400:407])  # 0.875 of a step: no step, but the statistics move
        assert wait_scores(sub, "s", 400).count == 7  # scored alone, not with the batch after it
        p.send("s", x[407:])
        scores, reps, end = None, [], time.monotonic() + 20
        while (scores is None or sum(len(r) for _, r in reps) < 53) and time.monotonic() < end:
            got = sub.recv(timeout_ms=200)
            if got and got[0] == "score/s/" and got[1].first_sequence == 407:
                scores = got[1]
            if got and got[0] == "rep/s/" and got[1].first_sequence >= 407:
                reps.append((got[1], representations(got[1])))
    assert daemon.terminate()[0] == 0
    assert scores is not None and scores.model_version == ae.message.version == status.autoencoder_version
    np.testing.assert_allclose(ae.reconstruction_errors(x[407:]), np.array(scores.errors, np.float32), rtol=1e-4, atol=1e-7)
    assert sum(len(r) for _, r in reps) == 53 and all(m.model_version == moco.message.version for m, _ in reps)
    published = np.concatenate([r for _, r in sorted(reps, key=lambda g: g[0].first_sequence)])
    np.testing.assert_allclose(moco.representation(x[407:]), published, rtol=1e-4, atol=1e-5)


def test_a_frozen_feature_alerts_from_the_stuck_signal_with_its_reason(start_daemon):
    # Three noisy features; from row 500 feature 2 repeats the value it had at row 499. Its 10th
    # equal value (row 508) alerts once, from the stuck signal alone (the only signal this stream
    # runs), naming feature 2 and the run in the Alert's reason.
    daemon = start_daemon(extra_config="[stream.frozen]\nsignals = stuck\n")
    ep = daemon.endpoints
    rng = np.random.default_rng(7)
    data = rng.standard_normal((600, 3)).astype(np.float32)
    data[500:, 2] = data[499, 2]
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"]) as sub:
        wait_heartbeat(sub)
        producer.send("frozen", data[:500])
        wait_warm(sub, "frozen", 500)
        producer.send("frozen", data[500:])
        alerts, end = [], time.monotonic() + 10
        while time.monotonic() < end:
            got = sub.recv(timeout_ms=500)
            if got and got[0] == "alert/frozen/":
                alerts.append(got[1])
            if got and got[0] == "score/frozen/" and got[1].first_sequence == 500:
                end = min(end, time.monotonic() + 1)
    assert daemon.terminate()[0] == 0
    assert [a.score.sequence for a in alerts] == [508], [a.score.sequence for a in alerts]
    alert = alerts[0]
    assert alert.signal == "stuck" and alert.reason == "feature 2 has sent the same value 10 times in a row"
    assert [f.index for f in alert.top_features] == [2]


def test_a_glitch_alerts_from_the_glitch_guard_and_is_counted_as_quarantined(start_daemon):
    # Three noisy features at the defaults; row 900's feature 1 is 1e6 (about 500,000 times its
    # range beyond it). It alerts once, from the glitch guard, naming feature 1 and the value in the
    # reason; the heartbeat counts the sample as quarantined (learned with the value replaced).
    daemon = start_daemon()
    ep = daemon.endpoints
    rng = np.random.default_rng(5)
    data = rng.uniform(-1, 1, (1000, 3)).astype(np.float32)
    data[900, 1] = 1e6
    with Producer(ep["ingest"]) as producer, Subscriber(ep["publish"]) as sub:
        wait_heartbeat(sub)
        producer.send("g", data[:600])
        # The rows after the model's warm-up steps calibrate its errors (those before do not).
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the model did not take its warm-up steps"
            status = {s.stream: s for s in wait_heartbeat(sub).streams}.get("g")
            if status is not None and status.autoencoder_version >= 60:
                break
        producer.send("g", data[600:900])
        wait_warm(sub, "g", 900)
        producer.send("g", data[900:])
        alerts, quarantined, end = [], None, time.monotonic() + 15
        while time.monotonic() < end and quarantined is None:
            got = sub.recv(timeout_ms=500)
            if got and got[0] == "alert/g/":
                alerts.append(got[1])
            if got and got[0] == "hb/":
                status = {s.stream: s for s in got[1].streams}.get("g")
                if status is not None and status.accepted == 1000:
                    quarantined = status.quarantined
    assert daemon.terminate()[0] == 0
    glitches = [a for a in alerts if a.signal == "glitch"]
    assert [a.score.sequence for a in glitches] == [900], [(a.score.sequence, a.signal) for a in alerts]
    alert = glitches[0]
    assert alert.beyond_range and alert.score.score == 1 and [f.index for f in alert.top_features] == [1]
    assert alert.reason.startswith("feature 1's value 1000000.0 lies ") and alert.reason.endswith(
        " times its range's width beyond it; not learned from"), alert.reason
    assert quarantined == 1


def test_a_heartbeat_of_many_streams_comes_in_parts_within_the_bound(start_daemon):
    """SPEC 7: with more streams than one message of 20,992 bytes holds, a heartbeat goes as `parts`
    messages of one time_ns, each with the counters; together they name every stream once."""
    daemon = start_daemon(daemon_config="max_streams = 100\nmax_stream_name_bytes = 256\n")
    names = ["é" * 125 + f"{i:06d}" for i in range(100)]  # 256 bytes each
    with Producer(daemon.endpoints["ingest"]) as producer, Subscriber(daemon.endpoints["publish"], ["hb/"]) as sub:
        assert wait_heartbeat(sub).parts == 1
        for name in names:
            producer.send(name, np.ones((1, 1), dtype=np.float32))
        beats, whole = HeartbeatParts(), None
        end = time.monotonic() + 20
        while whole is None and time.monotonic() < end:
            got = sub.recv(timeout_ms=200)
            if not got or got[1].samples_accepted < 100:
                continue
            assert got[1].ByteSize() <= 20992
            whole = beats.add(got[1])
    assert whole is not None and len(whole) >= 2
    assert [s.stream for hb in whole for s in hb.streams] == names
    assert len({(hb.uptime_ms, hb.samples_accepted, hb.train_steps, hb.parts) for hb in whole}) == 1


def test_after_a_kill_a_restored_streams_versions_go_on_after_every_version_published(start_daemon, tmp_path):
    """A model's version never goes down, across restarts too (ModelSnapshot.version): a daemon
    killed after its last checkpoint restores older models, which publish after the versions its
    subscribers already saw, not those versions again with other weights."""
    data_dir = tmp_path / "state"
    daemon = start_daemon(data_dir)
    with Producer(daemon.endpoints["ingest"]) as producer:
        for i in range(10):
            producer.send("s", sensors(100, dim=4, start=100 * i))
        wait_snapshot(daemon.endpoints["snapshots"], "s", "moco")
    assert daemon.terminate()[0] == 0  # the checkpoint the next start restores
    checkpointed = {}  # the versions it restores, published again at once

    again = start_daemon(data_dir)
    seen = {"autoencoder": 0, "moco": 0}
    with Producer(again.endpoints["ingest"]) as producer, Subscriber(again.endpoints["publish"], ["snapshot/s/"]) as sub:
        for model in seen:
            checkpointed[model] = wait_snapshot(again.endpoints["snapshots"], "s", model).message.version
        for i in range(10, 40):
            producer.send("s", sensors(100, dim=4, start=100 * i))
        end = time.monotonic() + 60
        while time.monotonic() < end and not all(seen[m] > checkpointed[m] + 20 for m in seen):
            got = sub.recv(timeout_ms=200)
            if got:
                model = "moco" if got[1].kind == pb.MODEL_KIND_MOCO else "autoencoder"
                seen[model] = max(seen[model], got[1].version)
    assert all(seen[m] > checkpointed[m] + 20 for m in seen), (seen, checkpointed)
    again.process.kill()  # no checkpoint since the start
    again.process.wait()

    third = start_daemon(data_dir)
    for model in seen:
        restored = wait_snapshot(third.endpoints["snapshots"], "s", model).message
        assert restored.version > seen[model], (model, restored.version, seen[model])
        assert restored.samples_seen == 1000  # the checkpoint's models
    third.terminate()


def test_heartbeat_parts_are_gathered_by_time_and_a_lost_part_drops_its_heartbeat():
    def beat(t, part, parts, name):
        return pb.Heartbeat(time_ns=t, part=part, parts=parts, streams=[pb.StreamStatus(stream=name)])
    beats = HeartbeatParts()
    assert beats.add(beat(1, 0, 2, "a")) is None  # its part 1 is lost
    assert beats.add(beat(2, 1, 2, "d")) is None
    whole = beats.add(beat(2, 0, 2, "c"))
    assert [s.stream for hb in whole for s in hb.streams] == ["c", "d"]
    assert beats.pending == {}  # the incomplete older one went with it
    assert [hb.time_ns for hb in beats.add(pb.Heartbeat(time_ns=3))] == [3]  # parts 0: an older daemon, one message


def test_the_client_refuses_what_the_daemon_would_reject_before_sending():
    with pytest.raises(ValueError):
        sample_batch("s", np.zeros((0, 3)), 0)
    with pytest.raises(ValueError):
        sample_batch("s", np.zeros((4, 2)), 0, timestamps_ns=[1, 2])
    with pytest.raises(TypeError):
        Subscriber("tcp://127.0.0.1:1", "alert/")
    with Producer("tcp://127.0.0.1:1", linger_ms=0) as p:
        with pytest.raises(ValueError):
            p.send_labels("s", np.zeros((3, 2)), ["a", "b"])
        with pytest.raises(ValueError):
            p.send_lines("s", ["x", "y"], timestamps_ns=[1])
        assert p.sequences == {}


def _window_snapshot(window, scales, channels, transform=pb.INPUT_TRANSFORM_NONE):
    width = window * len(scales) * channels
    m = pb.ModelSnapshot(stream="s", kind=pb.MODEL_KIND_AUTOENCODER, input_dim=width, window=window,
                         window_scales=scales, input_transform=transform, normaliser_epsilon=1e-6,
                         normaliser_mean=[0.0] * width, normaliser_variance=[1.0] * width,
                         activations=[pb.ACTIVATION_IDENTITY])
    m.tensors.add(name="layers.0.weight", shape=[width, width], data=np.eye(width, dtype="<f4").tobytes())
    m.tensors.add(name="layers.0.bias", shape=[width], data=np.zeros(width, dtype="<f4").tobytes())
    m.checksum = zlib.crc32(b"".join(t.data for t in m.tensors))
    return Snapshot.from_message(m)


def test_window_rows_are_each_blocks_own_mean_and_rows_of_another_width_are_refused():
    snap = _window_snapshot(4, [1, 3], 1)
    rng = np.random.default_rng(5)
    x = np.concatenate([[1e13], 0.5 + 0.01 * rng.standard_normal(400)]).astype(np.float32)
    rows = snap.inputs(x)
    assert rows.shape == (len(x) - 12 + 1, 8)
    t = len(x) - 1  # the last row: block means taken directly
    expected = [x[t - 3 + j] for j in range(4)] + [x[t + 1 - (4 - j) * 3:t + 1 - (3 - j) * 3].astype(np.float64).mean() for j in range(4)]
    assert np.abs(rows[-1] - np.array(expected, dtype=np.float32)).max() < 1e-6
    with pytest.raises(ValueError, match="Snapshot.inputs"):
        snap.reconstruction_errors(x[:, None])
    assert snap.reconstruction_errors(rows).shape == (rows.shape[0],)


def test_a_send_to_an_unreachable_daemon_times_out_when_asked_and_keeps_the_sequence():
    """Nothing listens: ZeroMQ queues a high-water mark's worth (1,000 messages), then the next send
    waits; with send_timeout_ms it gives up and the sequence counts only the batches queued."""
    with Producer("tcp://127.0.0.1:1", linger_ms=0, send_timeout_ms=100) as p:
        sent = 0
        with pytest.raises(TimeoutError):
            for _ in range(5000):
                p.send("s", np.ones((2, 3), dtype=np.float32))
                sent += 1
        assert 0 < sent < 5000 and p.sequences == {"s": 2 * sent}


def test_raw_push_refuses_a_peer_that_is_not_a_null_zmtp_daemon_and_gives_up_on_a_silent_one():
    import socket
    import threading
    from eddy_client.zmtp import raw_push

    def serve(greeting):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer():
            conn, _ = listener.accept()
            if greeting:
                conn.sendall(greeting)
            time.sleep(1.5)
            conn.close()
            listener.close()
        threading.Thread(target=answer, daemon=True).start()
        return f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    curve = b"\xff" + b"\0" * 8 + b"\x7f\x03\x01" + b"CURVE".ljust(20, b"\0") + b"\0" * 32
    with pytest.raises(ConnectionError, match="unexpected greeting"):
        raw_push(serve(curve))
    began = time.monotonic()
    with pytest.raises(socket.timeout):
        raw_push(serve(b""), timeout=0.3)
    assert time.monotonic() - began < 1.2


def test_a_subscriber_waits_until_its_subscription_is_live(start_daemon):
    """`Subscriber.wait_ready` returns once a heartbeat has come, so the scores of a batch sent
    right after it arrive: ZeroMQ drops what is published before a subscription is live (in a
    review, the first of five subscribe-then-send trials got none of its scores). The heartbeat it
    listened for is not handed to `recv`."""
    daemon = start_daemon()
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as p:
        for trial in range(8):
            with Subscriber(ep["publish"], [topic("score", "w")]) as sub:
                sub.wait_ready()
                p.send("w", np.ones((20, 2), np.float32))
                got = sub.recv(timeout_ms=3000)
                assert got is not None and got[0] == "score/w/" and got[1].first_sequence == 20 * trial, got
                assert sub.recv(timeout_ms=300) is None  # heartbeats come every 0.2 s: none passed on
    with Subscriber("tcp://127.0.0.1:9", ["score/"]) as silent:
        with pytest.raises(TimeoutError):
            silent.wait_ready(timeout_ms=300)
    assert daemon.terminate()[0] == 0


def test_refusals_hear_what_the_daemon_refused_of_a_stream(start_daemon):
    """`Refusals` as the tools use it: ready before the first message, then each `confirm` returns
    the refusals of what was sent since, once the stream's heartbeats account for every sample
    (taken or refused); labels (not counted by the stream) after two heartbeats."""
    daemon = start_daemon(daemon_config="max_samples_per_message = 256\n")
    ep = daemon.endpoints
    with Refusals(ep["publish"], "r") as r, Producer(ep["ingest"]) as p:
        r.wait_ready()
        p.send("r", np.ones((40, 2), np.float32))
        assert r.confirm(samples=40) == []
        p.send("r", np.ones((5, 3), np.float32), sequence=40)
        p.send("r", np.ones((6, 2), np.float32), sequence=45)
        errors = r.confirm(samples=11)
        assert [(e.code, e.samples) for e in errors] == [(pb.ERROR_CODE_DIM_MISMATCH, 5)], errors
        p.send_labels("r", np.ones((1, 2), np.float32), ["a"])
        errors = r.confirm()
        assert [e.code for e in errors] == [pb.ERROR_CODE_WRONG_KIND], errors
        # A message refused for its size alone has no count of samples (0 in the Error): it is
        # returned after two heartbeats in which the stream took nothing more, not a timeout
        # (from a review), and the samples sent with it are accounted for as usual.
        p.send("r", np.ones((300, 2), np.float32), sequence=51)
        p.send("r", np.ones((7, 2), np.float32), sequence=351)
        errors = r.confirm(samples=307, timeout_ms=3000)
        assert [(e.code, e.samples) for e in errors] == [(pb.ERROR_CODE_OVERSIZED, 0)], errors
    with Refusals("tcp://127.0.0.1:9", "r") as silent:
        with pytest.raises(TimeoutError):
            silent.wait_ready(timeout_ms=300)
    daemon.terminate()
