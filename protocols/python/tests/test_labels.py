"""Fine-tuning in the daemon: labelled samples over pyzmq fit a few-label head; every later sample
gets a class on `class/<stream>/`; the MoCo snapshot carries the head, and the client's head from it
(and `fit_head` on the same labels) agrees with what the daemon publishes."""
import os
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT
from eddy_client import Producer, Snapshot, Subscriber, fetch_snapshot, fit_head, pb, stretches

CENTRES = np.random.default_rng(5).normal(0, 3, size=(3, 6)).astype(np.float32)
NAMES = np.array(["fan", "pump", "valve"])


def parts(n, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    return (CENTRES[truth] + 0.4 * rng.standard_normal((n, 6))).astype(np.float32), truth


def moco(endpoint, accept=lambda snapshot: True, timeout=60, stream="parts"):
    """The stream's MoCo snapshot once there is one that `accept`s, else None. The trainer runs at
    idle priority with a guaranteed tenth of a core (`trainer_min_share`): on a machine whose cores
    are busy, the first snapshot may take tens of seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            snapshot = fetch_snapshot(endpoint, stream, "moco")
            if accept(snapshot):
                return snapshot
        except LookupError:
            pass
        time.sleep(0.2)
    return None


def wait(sub, accept, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = sub.recv(timeout_ms=200)
        if got and accept(*got):
            return got
    return None


# By default MoCo has batch normalisation, and the snapshot carries the encoder folded into plain
# layers: the client reads it as any other and must agree with the daemon's classes all the same.
@pytest.mark.parametrize("extra", ["", "moco_batch_norm = false\nmoco_reconstruction = 0\n"], ids=["defaults", "plain"])
def test_labels_fit_a_head_whose_classes_every_later_sample_gets(start_daemon, extra):
    d = start_daemon(extra_config="max_labels = 64\n" + extra)
    with Subscriber(d.endpoints["publish"], ["class/", "error/", "hb/", "snapshot/parts/moco/"]) as sub, \
            Producer(d.endpoints["ingest"]) as p:
        assert wait(sub, lambda t, m: t == "hb/")
        x, _ = parts(3000, seed=1)
        for i in range(0, len(x), 100):
            p.send("parts", x[i:i + 100])
        assert moco(d.endpoints["snapshots"]) is not None
        assert moco(d.endpoints["snapshots"]).head() is None
        # No class without labels.
        assert wait(sub, lambda t, m: t.startswith("class/"), timeout=1) is None

        # Labels that cannot be taken are refused, with the reason.
        p.send_labels("nowhere", x[:2], ["fan", "pump"])
        topic, error = wait(sub, lambda t, m: t == "error/nowhere/")
        assert error.code == pb.ERROR_CODE_NOT_FOUND and "labels" in error.message
        p.send("temps", np.arange(40, dtype=np.float32))  # dim 1: a windowed stream
        p.send_labels("temps", np.ones((1, 1), np.float32), ["hot"])
        topic, error = wait(sub, lambda t, m: t == "error/temps/" and m.code == pb.ERROR_CODE_DIM_MISMATCH)
        assert "windowed" in error.message and "dim 128" in error.message

        # Five labels per class.
        labelled, truth = parts(60, seed=2)
        keep = np.concatenate([np.flatnonzero(truth == c)[:5] for c in range(3)])
        p.send_labels("parts", labelled[keep], NAMES[truth[keep]])
        snapshot = moco(d.endpoints["snapshots"], lambda s: s.message.head_labels == 15)
        assert snapshot is not None
        head = snapshot.head()
        assert list(head.classes) == ["fan", "pump", "valve"]

        # Every later sample gets a class; the test samples are 300 the daemon never saw.
        test, test_truth = parts(300, seed=3)
        first = p.send("parts", test)
        got, published = {}, {}  # sequence -> (class, probability, version); version -> snapshot
        end = time.monotonic() + 15
        while len(got) < 300 and time.monotonic() < end:
            m = sub.recv(timeout_ms=500)
            if m and m[0] == "snapshot/parts/moco/":
                published[m[1].version] = Snapshot.from_message(m[1])
            if m and m[0] == "class/parts/":
                batch = m[1]
                for i in range(batch.count):
                    got[batch.first_sequence + i] = (batch.classes[batch.class_index[i]], batch.probability[i],
                                                     batch.model_version)
        assert len([s for s in got if first <= s < first + 300]) == 300
        names = np.array([got[first + i][0] for i in range(300)])
        accuracy = float(np.mean(names == NAMES[test_truth]))
        assert accuracy >= 0.9, accuracy

        # What a snapshot's head says is what the daemon published for the samples it scored with
        # that version (the head fitted on the snapshot's encoder and normaliser).
        versions = {got[first + i][2] for i in range(300)}
        versions.add(snapshot.message.version)
        published[snapshot.message.version] = snapshot
        checked = 0
        for version in versions & published.keys():
            same = [i for i in range(300) if got[first + i][2] == version]
            if not same:
                continue
            h = published[version].head()
            assert list(h.predict(test[same])) == [got[first + i][0] for i in same]
            assert np.allclose(h.probabilities(test[same]).max(axis=1), [got[first + i][1] for i in same], atol=1e-4)
            checked += len(same)
        assert checked > 0, (versions, sorted(published))
        # fit_head on the same labels and snapshot gives the daemon's head.
        offline = fit_head(snapshot, labelled[keep], NAMES[truth[keep]])
        assert np.allclose(offline.weights, head.weights, atol=1e-4)
        assert list(offline.predict(test)) == list(head.predict(test))


def regimes(blocks, seed, length=300):
    """A univariate series of blocks alternating a slow sine (period 40) and a fast one (period 9),
    with each sample's regime."""
    rng = np.random.default_rng(seed)
    t = np.arange(blocks * length)
    truth = (t // length) % 2
    x = np.sin(2 * np.pi * t / np.where(truth == 0, 40.0, 9.0)) + rng.uniform(-0.1, 0.1, len(t))
    return x.astype(np.float32), truth


def test_a_windowed_stream_takes_labelled_stretches_and_classes_each_window(start_daemon):
    """A windowed stream's label names the stretch of series its window reads (`stretches`); the
    daemon classes each later sample by the window ending at it, as the snapshot's head does on
    `Snapshot.inputs` of the same series, and `fit_head` on those rows gives the daemon's head."""
    d = start_daemon(extra_config="max_labels = 64\n")
    names = np.array(["slow", "fast"])
    with Subscriber(d.endpoints["publish"], ["class/motor/", "error/", "hb/", "snapshot/motor/moco/"]) as sub, \
            Producer(d.endpoints["ingest"]) as p:
        assert wait(sub, lambda t, m: t == "hb/")
        x, _ = regimes(12, seed=1)
        for i in range(0, len(x), 200):
            p.send("motor", x[i:i + 200])
        snapshot = moco(d.endpoints["snapshots"], stream="motor")
        assert snapshot is not None and snapshot.span == 128

        # Twenty stretches of each regime (at every phase), from a series the stream never saw, each
        # inside one block.
        labelled, truth = regimes(4, seed=2)
        ends = (np.arange(140, 300, 8)[None, :] + 300 * np.arange(4)[:, None]).ravel()
        pieces = stretches(labelled, ends, snapshot.span)
        assert pieces.shape == (80, 128) and np.array_equal(pieces[0], labelled[13:141])
        p.send_labels("motor", pieces, names[truth[ends]])
        snapshot = moco(d.endpoints["snapshots"], lambda s: s.message.head_labels == 64, stream="motor")
        assert snapshot is not None
        head = snapshot.head()
        assert sorted(head.classes) == ["fast", "slow"]
        # fit_head on the rows the stream builds from those stretches gives the daemon's head.
        rows = np.vstack([snapshot.inputs(piece) for piece in pieces])
        assert rows.shape == (80, 32)
        # max_labels 64: the newest 64 are kept.
        offline = fit_head(snapshot, rows[16:], names[truth[ends[16:]]])
        assert np.allclose(offline.weights, head.weights, atol=1e-4)

        # Four new blocks: every sample is classed by the window ending at it.
        test, test_truth = regimes(4, seed=3)
        first = p.send("motor", test)
        got, published = {}, {snapshot.message.version: snapshot}
        end = time.monotonic() + 15
        while len(got) < len(test) and time.monotonic() < end:
            m = sub.recv(timeout_ms=500)
            if m and m[0] == "snapshot/motor/moco/":
                published[m[1].version] = Snapshot.from_message(m[1])
            if m and m[0] == "class/motor/":
                for i in range(m[1].count):
                    got[m[1].first_sequence + i] = (m[1].classes[m[1].class_index[i]], m[1].model_version)
        assert all(first + i in got for i in range(len(test))), len(got)
        inside = [i for i in range(len(test)) if i % 300 >= 128]
        classes = np.array([got[first + i][0] for i in inside])
        series = np.concatenate([x, test])
        windows = snapshot.inputs(series)[len(x) - 127:]
        assert np.mean(classes == names[test_truth[inside]]) >= 0.95
        # A snapshot's head on Snapshot.inputs of the stream's series gives the classes published
        # with its version.
        checked = 0
        for version, s in published.items():
            same = [i for i in range(len(test)) if got[first + i][1] == version]
            if same and s.head() is not None:
                assert list(s.head().predict(windows[same])) == [got[first + i][0] for i in same]
                checked += len(same)
        assert checked > 0, sorted(published)


def test_eddy_label_sends_a_csv_of_labelled_samples(start_daemon, tmp_path):
    d = start_daemon(extra_config="max_labels = 4\n")
    x, truth = parts(400, seed=4)
    with Producer(d.endpoints["ingest"]) as p:
        p.send("parts", x)
    assert moco(d.endpoints["snapshots"]) is not None
    rows = ["kind,a,b,c,d,e,f"] + [",".join([NAMES[t]] + [f"{v:.6f}" for v in row]) for row, t in zip(x[:6], truth[:6])]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    eddy = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))
    out = subprocess.run([eddy, "label", "--stream", "parts", "--endpoint", d.endpoints["ingest"], str(tmp_path / "labels.csv")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "sent 6 labelled samples" in out.stderr, out.stderr
    # max_labels 4: the newest four are kept, and the head is fitted on them.
    snapshot = moco(d.endpoints["snapshots"], lambda s: s.message.head_labels > 0)
    assert snapshot is not None and snapshot.message.head_labels == 4
    assert set(snapshot.head().classes) == set(NAMES[truth[2:6]])
    # eddy watch --classes shows each batch's classes, and the snapshot's head.
    watch = subprocess.Popen([eddy, "watch", "--endpoint", d.endpoints["publish"], "--classes", "--seconds", "4"],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    with Producer(d.endpoints["ingest"]) as p:
        p.send("parts", x[:50], sequence=400)
    out_watch, _ = watch.communicate(timeout=30)
    assert "class    parts seq 400+50: " in out_watch, out_watch
    bad = subprocess.run([eddy, "label", "--stream", "parts", "--endpoint", d.endpoints["ingest"], "-"],
                         input="fan,1,2\npump,oops,3\n", capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "line 2" in bad.stderr
