"""The client's own behaviour, without a daemon (from a review of the client, stop 58): labels as the
daemon takes them, producers that do not queue while unreachable, topics, key files by path,
heartbeat parts kept bounded, strings that are not lists, a daemon that never starts, and one that
dies in use (stop 59)."""
import contextlib
import os
import socket
import stat
import time

import numpy as np
import pytest
import zmq

from eddy_client import CurveKeys, HeartbeatParts, Producer, Snapshot, fit_head, line_batch, pb, topic
from eddy_client.local import LocalDaemon


@contextlib.contextmanager
def producer_to_pull():
    """A Producer and a PULL socket of the test's own that it sends to: what goes out, as a daemon
    would take it in."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Producer(f"tcp://127.0.0.1:{port}", context=context) as p:
            yield p, pull
    finally:
        pull.close(linger=0)
        context.term()


def identity_snapshot(width):
    """A MoCo snapshot whose representation is its input (one identity layer, no normalisation)."""
    message = pb.ModelSnapshot(kind=pb.MODEL_KIND_MOCO, input_dim=width, representation_layer=0)
    return Snapshot(message=message, weights=[np.eye(width, dtype=np.float32)], biases=[np.zeros(width, np.float32)],
                    activations=["identity"], mean=np.zeros(width, np.float32), variance=np.ones(width, np.float32))


def test_fit_head_takes_labels_as_the_daemon_does_text_in_utf8_order():
    # The daemon's classes are the labels' text sorted by UTF-8 bytes: "10" before "2". Before,
    # fit_head sorted the numbers (2, 10) and its weight columns were the daemon's swapped.
    rng = np.random.default_rng(0)
    rows = np.vstack([rng.normal(-2, 0.3, (6, 3)), rng.normal(2, 0.3, (6, 3))]).astype(np.float32)
    head = fit_head(identity_snapshot(3), rows, [2] * 6 + [10] * 6)
    assert list(head.classes) == ["10", "2"]
    assert list(head.predict(rows)) == ["2"] * 6 + ["10"] * 6
    byte_labels = fit_head(identity_snapshot(3), rows, [np.bytes_(b"fan")] * 6 + [b"pump"] * 6)
    assert list(byte_labels.classes) == ["fan", "pump"]
    with pytest.raises(TypeError):
        fit_head(identity_snapshot(3), rows[:3], "abc")


def test_fit_head_refuses_what_it_cannot_fit_on():
    # From a review: an autoencoder snapshot, NaN rows and a wrong count of labels each fitted
    # something (a head on the bottleneck, one predicting a single class, a broadcast error).
    rows = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    labels = ["a", "b"] * 3
    autoencoder = identity_snapshot(3)
    autoencoder.message.kind = pb.MODEL_KIND_AUTOENCODER
    with pytest.raises(ValueError, match="MoCo snapshot"):
        fit_head(autoencoder, rows, labels)
    with pytest.raises(ValueError, match="not finite"):
        fit_head(identity_snapshot(3), np.where(np.arange(18).reshape(6, 3) == 4, np.nan, rows), labels)
    with pytest.raises(ValueError, match="5 labels for 6 rows"):
        fit_head(identity_snapshot(3), rows, labels[:5])
    assert list(fit_head(identity_snapshot(3), rows, labels).classes) == ["a", "b"]


def test_a_producer_refuses_names_and_timestamps_the_daemon_would_not_take_as_meant():
    # A name the daemon refuses is reported on error/_/, not the stream's own topic; timestamps
    # in float seconds were truncated and read as nanoseconds (from a review).
    with producer_to_pull() as (p, pull):
        for name in ["", "a/b", "a\u200bb", "tab\there"]:
            with pytest.raises(ValueError):
                p.send(name, np.zeros((1, 2)))
            with pytest.raises(ValueError):
                p.send_lines(name, ["x"])
            with pytest.raises(ValueError):
                p.send_labels(name, np.zeros((1, 2)), ["x"])
        with pytest.raises(TypeError, match="integer nanoseconds"):
            p.send("s", np.zeros((2, 2)), timestamps_ns=[time.time()] * 2)
        assert p.sequences == {} and not pull.poll(100)
        p.send("s", np.zeros((2, 2)), timestamps_ns=np.array(["2026-01-01T00:00:00", "2026-01-01T00:00:01"], "datetime64[s]"))
        p.send("pump-7 héllo", np.zeros((1, 2)), timestamps_ns=[1_700_000_000_000_000_000])
        assert pull.poll(5000)
        stream, body = pull.recv_multipart()
        assert list(pb.SampleBatch.FromString(body).timestamps_ns) == [1_767_225_600_000_000_000, 1_767_225_601_000_000_000]
        assert pull.recv_multipart()[0].decode() == "pump-7 héllo"


def test_inputs_are_rows_and_an_empty_list_of_lines_is_refused():
    # From a review: inputs() of one sample as a 1-D array gave a 1-D array, which representation()
    # then refused, telling the user to use inputs(); send_lines([]) sent nothing without a word
    # where send and send_labels refuse an empty batch.
    assert identity_snapshot(3).inputs([1, 2, 3]).shape == (1, 3)
    assert identity_snapshot(1).inputs([1, 2, 3]).shape == (3, 1)
    assert identity_snapshot(3).representation(identity_snapshot(3).inputs([1, 2, 3])).shape == (1, 3)
    with pytest.raises(ValueError, match="the model takes samples of 3"):
        identity_snapshot(3).inputs([1, 2])
    with producer_to_pull() as (p, pull):
        with pytest.raises(ValueError, match="no lines"):
            p.send_lines("app", [])
        assert p.sequences == {} and not pull.poll(100)


def test_labels_go_out_as_text_and_bytes_as_utf8():
    with producer_to_pull() as (p, pull):
        p.send_labels("s", np.zeros((3, 2)), [b"fan", np.bytes_(b"pump"), 7])
        with pytest.raises(TypeError):
            p.send_labels("s", np.zeros((3, 1)), "abc")
        assert pull.poll(5000)
        stream, body = pull.recv_multipart()
        assert stream == b"s" and list(pb.LabelBatch.FromString(body).labels) == ["fan", "pump", "7"]


def test_an_immediate_producer_does_not_queue_while_the_daemon_is_unreachable():
    context = zmq.Context()
    # A port nothing listens on, held for the whole test: bound and never listened on, so a
    # connection is refused and no other process can take the port meanwhile (one bound and
    # released could be taken by a daemon another test starts).
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    endpoint = f"tcp://127.0.0.1:{held.getsockname()[1]}"
    try:
        with Producer(endpoint, context=context, linger_ms=0, send_timeout_ms=100, immediate=True) as p:
            with pytest.raises(TimeoutError):
                p.send("s", np.zeros((1, 2)))
            assert p.sequences.get("s", 0) == 0
        # The default queues (up to the high-water mark) and returns.
        with Producer(endpoint, context=context, linger_ms=0, send_timeout_ms=100) as p:
            assert p.send("s", np.zeros((1, 2))) == 0 and p.sequences["s"] == 1
    finally:
        context.term()
        held.close()


def test_topics_close_with_a_slash_so_one_stream_does_not_take_anothers():
    assert topic("score", "ab") == "score/ab/" and not "score/abc/".startswith(topic("score", "ab"))
    assert topic("alert") == "alert/"
    with pytest.raises(ValueError):
        topic("scores", "ab")


def test_curve_keys_load_from_paths(tmp_path):
    public, secret = zmq.curve_keypair()
    server_public, _ = zmq.curve_keypair()
    (tmp_path / "server.pub").write_text(f'public-key = "{server_public.decode()}"\n')
    key = tmp_path / "client.key"
    key.write_text(f'public-key = "{public.decode()}"\nsecret-key = "{secret.decode()}"\n')
    os.chmod(key, stat.S_IRUSR | stat.S_IWUSR)
    keys = CurveKeys.load(tmp_path / "server.pub", key)
    assert keys.server_public == server_public.decode() and keys.public == public.decode()


def test_heartbeat_parts_keep_a_bounded_number_waiting_and_ignore_parts_out_of_range():
    beats = HeartbeatParts()
    for t in range(1000):
        assert beats.add(pb.Heartbeat(time_ns=t, part=0, parts=2)) is None
    assert len(beats.pending) <= HeartbeatParts.KEPT
    assert beats.add(pb.Heartbeat(time_ns=5000, part=3, parts=2)) is None
    first = beats.add(pb.Heartbeat(time_ns=999, part=1, parts=2))
    assert [h.part for h in first] == [0, 1]


def test_a_string_is_not_taken_as_a_list_of_lines():
    with pytest.raises(TypeError):
        line_batch("app", "GET /health 200", 0)
    assert len(line_batch("app", ["GET /health 200"], 0).lines) == 1


def test_a_local_daemon_runs_on_the_defaults_and_a_snapshot_can_be_waited_for(tmp_path):
    # From a review: LocalDaemon needed a configuration file even for the defaults, and
    # fetch_snapshot had no way to wait for a stream's first snapshot.
    from conftest import Daemon
    from eddy_client import fetch_snapshot
    d = Daemon(tmp_path / "data", None)
    try:
        assert sorted(d.endpoints) == ["http", "ingest", "publish", "snapshots"]
        with pytest.raises(LookupError, match="ERROR_CODE_NOT_FOUND"):
            fetch_snapshot(d.endpoints["snapshots"], "none", "moco")
        began = time.monotonic()
        with pytest.raises(LookupError, match="ERROR_CODE_NOT_FOUND"):
            fetch_snapshot(d.endpoints["snapshots"], "none", "moco", wait_s=2.5)
        assert time.monotonic() - began >= 2
    finally:
        assert d.terminate()[0] == 0


def test_a_daemon_that_prints_no_endpoints_is_killed_at_the_start_timeout(tmp_path):
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    os.chmod(silent, 0o755)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        LocalDaemon(silent, tmp_path / "data", tmp_path / "eddy.conf", start_timeout=0.5)
    assert time.monotonic() - began < 10


def fake_daemon(tmp_path, then, before=""):
    """A stand-in for `eddy serve`: runs `before` (shell), prints four endpoints, then runs `then`.

    A trap goes in `before`: once the endpoints are out the client may signal at once, and a
    SIGTERM before the trap is set would kill the shell (-15) instead of running it."""
    fake = tmp_path / "fake"
    endpoints = "for n in ingest publish snapshots http; do echo \"$n tcp://127.0.0.1:1\"; done"
    fake.write_text("\n".join(["#!/bin/sh", before, endpoints, then, ""]))
    os.chmod(fake, 0o755)
    return fake


def test_a_daemon_that_dies_in_use_is_reported_when_the_block_ends(tmp_path):
    with pytest.raises(RuntimeError, match="exited with 3 while in use"):
        with LocalDaemon(fake_daemon(tmp_path, "exit 3"), tmp_path / "data", tmp_path / "eddy.conf") as d:
            d.process.wait(timeout=10)
    # One that stops with a failure on SIGTERM is reported too; one that stops cleanly is not.
    with pytest.raises(RuntimeError, match="stopped with 5"):
        with LocalDaemon(fake_daemon(tmp_path, "while :; do sleep 0.05; done", before="trap 'exit 5' TERM"),
                         tmp_path / "data", tmp_path / "eddy.conf"):
            pass
    with LocalDaemon(fake_daemon(tmp_path, "while :; do sleep 0.05; done", before="trap 'exit 0' TERM"),
                     tmp_path / "data", tmp_path / "eddy.conf") as d:
        assert d.endpoints["http"] == "tcp://127.0.0.1:1"
    # A daemon the block stopped itself is not reported again.
    with LocalDaemon(fake_daemon(tmp_path, "while :; do sleep 0.05; done", before="trap 'exit 5' TERM"),
                     tmp_path / "data", tmp_path / "eddy.conf") as d:
        assert d.terminate()[0] == 5
    # An exception of the block's own is not replaced.
    with pytest.raises(KeyError):
        with LocalDaemon(fake_daemon(tmp_path, "exit 3"), tmp_path / "data", tmp_path / "eddy.conf") as d:
            d.process.wait(timeout=10)
            raise KeyError("the block's")
