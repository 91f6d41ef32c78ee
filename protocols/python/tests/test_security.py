"""CURVE from outside: keys made by `eddy keygen`, a daemon that takes only allowed keys, and
pyzmq clients with no key, an unknown key and a known key (refused, refused, served)."""
import os
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import zmq

from conftest import ROOT
from eddy_client import CurveKeys, Producer, Subscriber, fetch_snapshot, sample_batch
from eddy_client.zmtp import RawCurvePush
from test_client import wait_heartbeat, wait_scores
from test_operations import exposition, get

EDDY = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))


def keygen(name, directory):
    out = subprocess.run([EDDY, "keygen", name, "--directory", str(directory)], capture_output=True, text=True, check=True)
    assert f"{name}.key" in out.stdout
    return directory / f"{name}.key", directory / f"{name}.pub"


@pytest.fixture
def keys(tmp_path):
    allowed = tmp_path / "clients"
    allowed.mkdir(mode=0o755)
    server_key, server_pub = keygen("server", tmp_path)
    known_key, _ = keygen("known", allowed)          # its .pub is in the allow-list directory
    unknown_key, _ = keygen("unknown", tmp_path)
    assert oct(os.stat(server_key).st_mode & 0o777) == "0o600"
    return dict(server_key=server_key, server_pub=server_pub, allowed=allowed,
                known=CurveKeys.load(str(server_pub), str(known_key)), known_key=known_key,
                unknown=CurveKeys.load(str(server_pub), str(unknown_key)))


def curve_config(keys):
    return f'curve_secret_key = "{keys["server_key"]}"\ncurve_allowed_clients = "{keys["allowed"]}"\n'


def test_plaintext_and_unknown_keys_are_refused_and_a_known_key_is_served(start_daemon, keys):
    d = start_daemon(daemon_config=curve_config(keys))
    ep = d.endpoints
    context = zmq.Context()
    try:
        known_sub = Subscriber(ep["publish"], context=context, curve=keys["known"])
        unknown_sub = Subscriber(ep["publish"], context=context, curve=keys["unknown"])
        plain_sub = Subscriber(ep["publish"], context=context)
        wait_heartbeat(known_sub)
        x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        producers = []  # kept open: a closed socket would end its handshake early
        for name, curve in [("plaintext", None), ("unknown", keys["unknown"]), ("known", keys["known"])]:
            producer = Producer(ep["ingest"], context=context, linger_ms=0, curve=curve)
            producers.append(producer)
            producer.socket.setsockopt(zmq.SNDTIMEO, 500)
            try:
                producer.send(name, x)  # queued on the client's side, or refused there: never delivered
            except zmq.Again:
                assert name != "known"
        assert wait_scores(known_sub, "known", 0).first_sequence == 0
        # Refused subscribers hear nothing, not even heartbeats (sent every 0.2 s).
        assert unknown_sub.recv(timeout_ms=1000) is None
        assert plain_sub.recv(timeout_ms=200) is None
        deadline = time.monotonic() + 10
        while (hb := wait_heartbeat(known_sub)).handshakes_refused < 2 and time.monotonic() < deadline:
            pass
        assert hb.handshakes_refused >= 2  # the unknown key's SUB and PUSH, each counted
        assert [s.stream for s in hb.streams] == ["known"]
        assert hb.samples_accepted == 64

        # The snapshot server answers the known key only.
        with pytest.raises(LookupError):  # answered: no snapshot yet, or one
            for _ in range(50):
                fetch_snapshot(ep["snapshots"], "nothing-here", context=context, curve=keys["known"])
        with pytest.raises(TimeoutError):
            fetch_snapshot(ep["snapshots"], "known", timeout_ms=500, context=context)
        with pytest.raises(TimeoutError):
            fetch_snapshot(ep["snapshots"], "known", timeout_ms=500, context=context, curve=keys["unknown"])
    finally:
        context.destroy(linger=0)


def test_feed_watch_and_snapshot_commands_take_keys(start_daemon, keys):
    d = start_daemon(daemon_config=curve_config(keys))
    ep = d.endpoints
    flags = ["--server-key", str(keys["server_pub"]), "--client-key", str(keys["known_key"])]
    rows = "\n".join(f"{np.sin(i / 5):.4f},{np.cos(i / 7):.4f}" for i in range(300))
    fed = subprocess.run([EDDY, "feed", "--stream", "cli", "--endpoint", ep["ingest"], *flags],
                         input=rows, capture_output=True, text=True, timeout=60)
    assert fed.returncode == 0, fed.stderr
    # A snapshot can come before the next heartbeat: read until a heartbeat counts the stream.
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--seconds", "20", *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in watch.stdout:
            seen.append(line)
            if "cli: 300 in" in line:
                break
    finally:
        watch.kill()
        watch.wait()
    assert any("cli: 300 in" in line for line in seen), "".join(seen)
    deadline = time.monotonic() + 20
    while True:
        snap = subprocess.run([EDDY, "snapshot", "--endpoint", ep["snapshots"], "--stream", "cli", *flags],
                              capture_output=True, text=True, timeout=60)
        if snap.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert snap.returncode == 0 and '"stream":"cli"' in snap.stdout, snap.stderr
    # Half the keys is a usage error.
    half = subprocess.run([EDDY, "watch", "--server-key", str(keys["server_pub"])], capture_output=True, text=True)
    assert half.returncode != 0 and "go together" in half.stderr


def test_a_public_endpoint_without_curve_is_refused_unless_plaintext_is_intended(tmp_path):
    config = tmp_path / "eddy.conf"
    config.write_text('publish = tcp://0.0.0.0:0\ndata_dir = ""\n')
    out = subprocess.run([EDDY, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "tcp://0.0.0.0:0" in out.stderr and "allow_plaintext" in out.stderr


def test_a_client_key_others_can_read_is_refused(keys):
    os.chmod(keys["known_key"], 0o644)
    with pytest.raises(PermissionError):
        CurveKeys.load(str(keys["server_pub"]), str(keys["known_key"]))


def test_sighup_reads_the_allow_list_again(start_daemon, keys, tmp_path):
    """A key added to the allow-list directory is let in after SIGHUP, on the ingest socket (the
    daemon's own CURVE) and on PUB (libzmq's, through the ZAP handler); an allow-list that became
    unreadable is refused and the one in force kept."""
    d = start_daemon(daemon_config=curve_config(keys))
    ep = d.endpoints
    later_key, later_pub = keygen("later", tmp_path)
    later = CurveKeys.load(str(keys["server_pub"]), str(later_key))
    context = zmq.Context()
    try:
        known_sub = Subscriber(ep["publish"], context=context, curve=keys["known"])
        wait_heartbeat(known_sub)
        x = np.ones((8, 3), np.float32)
        before = Producer(ep["ingest"], context=context, linger_ms=0, curve=later)
        before.socket.setsockopt(zmq.SNDTIMEO, 300)
        try:
            before.send("later", x)
        except zmq.Again:
            pass
        deadline = time.monotonic() + 10
        while wait_heartbeat(known_sub).handshakes_refused < 1 and time.monotonic() < deadline:
            pass
        assert wait_heartbeat(known_sub).samples_accepted == 0
        before.close()

        os.replace(later_pub, keys["allowed"] / "later.pub")
        d.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        later_sub = Subscriber(ep["publish"], context=context, curve=later)
        with Producer(ep["ingest"], context=context, curve=later) as after:
            after.send("later", x)
            assert wait_scores(later_sub, "later", 0).first_sequence == 0

        # An allow-list others may write is refused on reload, as at start: the list in force stays,
        # so "later" is still let in although its key has left the directory meanwhile.
        os.replace(keys["allowed"] / "later.pub", later_pub)
        os.chmod(keys["allowed"], 0o777)
        d.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        os.chmod(keys["allowed"], 0o755)
        with Producer(ep["ingest"], context=context, curve=later) as again:
            again.send("later", x, sequence=8)
            assert wait_scores(later_sub, "later", 8).first_sequence == 8
        assert d.process.poll() is None
        # The refused reload is counted (systemctl reload succeeds either way).
        metrics = urllib.request.urlopen(f"http://{ep['http']}/metrics", timeout=10).read().decode()
        failed = [l.split()[1] for l in metrics.splitlines() if l.startswith("eddy_allow_list_reload_failures_total ")]
        assert [float(v) for v in failed] == [1.0], failed
    finally:
        context.destroy(linger=0)
    assert d.terminate()[0] == 0


def test_a_refused_curve_message_is_read_past_and_a_ping_inside_it_is_answered(start_daemon, keys):
    """Under CURVE a refused message (here a frame over max_message_bytes, with MORE: the message
    goes on) is read past box by box, and the connection goes on: a PING between its frames gets
    its PONG, and the next message is scored. Before, the connection closed at the refusal (the
    messages read ahead behind it lost, uncounted); a PING inside a refused message went unanswered
    (a producer with heartbeats would have dropped the connection). A raw CurveZMQ client, since no
    ZeroMQ library lets one put a PING between a message's frames."""
    d = start_daemon(daemon_config=curve_config(keys) + "max_message_bytes = 4096\n")
    ep = d.endpoints
    with Subscriber(ep["publish"], ["error/", "score/", "hb/"], curve=keys["known"]) as sub:
        wait_heartbeat(sub)
        push = RawCurvePush(ep["ingest"], keys["known"])
        good = [sample_batch("good", np.ones((4, 4), np.float32), s).SerializeToString() for s in (0, 4)]
        push.send(push.box(b"big", more=True) + push.box(b"\1" * 8000, more=True)
                  + push.box(b"\x04PING\x00\x0actx", command=True) + push.box(b"tail")
                  + push.box(b"good", more=True) + push.box(good[0]))
        flags, pong = push.read_box()
        assert flags & 2 and pong == b"\x04PONGctx"
        assert wait_scores(sub, "good", 0) is not None
        push.send(push.box(b"good", more=True) + push.box(good[1]))
        assert wait_scores(sub, "good", 4) is not None
        push.close()
    metrics = exposition(get(f"http://{ep['http']}/metrics")[1])
    assert metrics.get('eddy_messages_rejected_total{code="oversized"}') == 1, metrics
    assert metrics.get("eddy_protocol_errors_total", 0) == 0
    d.terminate()
