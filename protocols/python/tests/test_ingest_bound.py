"""Ingest memory bounded in bytes, from outside: pyzmq producers and a hand-written ZMTP client send
many-frame, oversized, half-sent and too many connections' messages; the daemon refuses each at its
frame header with its error code, its resident memory stays within the documented bound
(max_ingest_connections x ingest_connection_bytes + ingest_buffer_bytes), and good traffic goes on."""
import socket
import struct
import time

import numpy as np
import zmq

from eddy_client import Producer, Subscriber, pb
from eddy_client.zmtp import GREETING, frame_header, raw_push, short_frame
from test_client import wait_heartbeat, wait_scores
from test_operations import exposition, get, until

BOUND_CONFIG = """
max_message_bytes = 1048576
ingest_buffer_bytes = 4M
ingest_connection_bytes = 64K
max_ingest_connections = 16
ingest_handshake_seconds = 1
"""
BOUND = 16 * 64 * 1024 + 4 * 1024 * 1024


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def errors_until(sub, count, timeout=20):
    codes = []
    end = time.monotonic() + timeout
    while len(codes) < count and time.monotonic() < end:
        got = sub.recv(timeout_ms=1000)
        if got and got[0].startswith("error/"):
            codes.append((got[0], got[1].code))
    return codes


def test_floods_of_every_shape_are_refused_at_the_frame_header_and_memory_stays_within_the_bound(start_daemon):
    daemon = start_daemon(daemon_config=BOUND_CONFIG)
    ep, pid = daemon.endpoints, daemon.process.pid
    ctx = zmq.Context.instance()
    with Producer(ep["ingest"]) as good, Subscriber(ep["publish"], ["error/", "hb/", "score/"]) as sub:
        wait_heartbeat(sub)
        good.send("good", np.ones((8, 4), np.float32))
        wait_scores(sub, "good", 0)
        base = rss(pid)
        peak = base

        # Many frames: 400 frames of 512 KiB (200 MiB), which libzmq's PULL would hold whole.
        many = ctx.socket(zmq.PUSH)
        many.connect(ep["ingest"])
        chunk = b"\0" * (512 * 1024)
        many.send_multipart([b"many"] + [chunk] * 400)
        # Oversized: 8 connections each sending a 24 MiB frame over max_message_bytes.
        big = []
        for i in range(8):
            p = ctx.socket(zmq.PUSH)
            p.connect(ep["ingest"])
            p.send_multipart([f"big{i}".encode(), b"\1" * (24 << 20)])
            big.append(p)
        codes = []
        end = time.monotonic() + 30
        while len(codes) < 9 and time.monotonic() < end:
            peak = max(peak, rss(pid))
            codes += errors_until(sub, 1, timeout=0.5)
        assert ("error/many/", pb.ERROR_CODE_BAD_FRAMES) in codes
        assert sorted(c for c in codes if c[0].startswith("error/big")) == sorted(
            (f"error/big{i}/", pb.ERROR_CODE_OVERSIZED) for i in range(8))

        # Messages under way: each holds the 850 KiB it sent of the 4 MiB buffer; the fifth's do not fit.
        held = []
        for i in range(5):
            held.append(half_sent(ep["ingest"], f"slow{i}"))
            time.sleep(0.2)
        codes = errors_until(sub, 1)
        assert codes == [("error/slow4/", pb.ERROR_CODE_OVER_BUDGET)]
        # A held message completes once its bytes arrive: it is a SampleBatch frame of wrong length,
        # so it is rejected as undecodable, which shows it was read whole.
        held[0].sendall(b"\2" * (50 * 1024))
        assert errors_until(sub, 1) == [("error/slow0/", pb.ERROR_CODE_UNDECODABLE)]

        # A connection that greets back nothing is closed after ingest_handshake_seconds (1 s here).
        host, port = ep["ingest"].removeprefix("tcp://").rsplit(":", 1)
        silent = socket.create_connection((host, int(port)))
        silent.settimeout(5)
        greeting = b""
        while len(greeting) < 64:
            greeting += silent.recv(64 - len(greeting))
        start = time.monotonic()
        assert silent.recv(64) == b""
        assert 0.5 < time.monotonic() - start < 4
        silent.close()

        # Too many connections: beyond 16 open, each new one is closed as it opens and counted.
        extra = [zmtp_client_or_closed(ep["ingest"]) for _ in range(16)]
        http = ep["http"]
        refused = until(lambda: exposition(get(f"http://{http}/metrics")[1]).get("eddy_connections_refused_total", 0) >= 1, 10)
        assert refused
        peak = max(peak, rss(pid))
        assert peak - base < BOUND + (16 << 20), f"RSS grew {(peak - base) >> 20} MiB, bound {BOUND >> 20} MiB"

        for c in held + [c for c in extra if c]:
            c.close()
        for p in big + [many]:
            p.close(linger=0)
        # Good traffic goes on.
        good.send("good", np.ones((8, 4), np.float32), sequence=8)
        assert wait_scores(sub, "good", 8) is not None
    assert daemon.terminate()[0] == 0


def half_sent(endpoint, stream):
    """A connection that has sent `stream`'s name and most of a 900 KiB frame (850 KiB: the budget
    counts a frame's bytes as they come, not its header's size)."""
    c = raw_push(endpoint)
    c.sendall(short_frame(stream.encode(), more=True) + frame_header(900 * 1024) + b"\2" * (850 * 1024))
    return c


def zmtp_client_or_closed(endpoint):
    """A handshaken client, or None when the daemon closed the connection as it opened."""
    try:
        return raw_push(endpoint)
    except OSError:
        return None


def reset(s):
    """Closes a TCP socket with a reset (SO_LINGER 0), as a crashed or scanning client does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_connections_reset_at_every_stage_leave_the_daemon_running_and_free_their_slots(start_daemon):
    """Producers that vanish at any point of the handshake (before the daemon's greeting reaches
    them, halfway through theirs, after it): the daemon's replies to a connection libzmq has already
    dropped must not stop ingest, and no slot stays taken. Then as many connections as
    max_ingest_connections all get through, and good traffic is scored."""
    daemon = start_daemon(daemon_config="max_ingest_connections = 4\ningest_handshake_seconds = 1\n")
    ep = daemon.endpoints
    host, port = ep["ingest"].removeprefix("tcp://").rsplit(":", 1)
    for i in range(300):
        s = socket.create_connection((host, int(port)))
        stage = i % 3
        if stage == 1:
            s.sendall(GREETING[:20])
        elif stage == 2:
            s.sendall(GREETING)
            s.settimeout(2)
            try:
                s.recv(64)
            except OSError:
                pass
        reset(s)
    time.sleep(2.5)  # past ingest_handshake_seconds: any half-open connection is closed by now
    http = ep["http"]
    before = exposition(get(f"http://{http}/metrics")[1]).get("eddy_connections_refused_total", 0)
    clients = [raw_push(ep["ingest"]) for _ in range(4)]
    after = exposition(get(f"http://{http}/metrics")[1]).get("eddy_connections_refused_total", 0)
    assert after == before, "a connection that reset still holds a slot"
    for c in clients:
        c.close()
    with Producer(ep["ingest"]) as good, Subscriber(ep["publish"], ["score/"]) as sub:
        time.sleep(0.3)
        good.send("good", np.ones((8, 4), np.float32))
        assert wait_scores(sub, "good", 0) is not None
    assert daemon.terminate()[0] == 0


def closed_within(s, seconds):
    """Whether the daemon closes `s` within `seconds` (reading and dropping what it sends)."""
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_a_message_left_in_progress_is_closed_and_its_share_of_the_buffer_freed(start_daemon):
    """Peers that announce a frame and stall, or trickle it a byte at a time, hold their share of
    ingest_buffer_bytes for ingest_message_seconds (1 s here), not for ever: then they are closed
    (counted as protocol errors) and a message that did not fit beside theirs fits. A connection
    that is idle between messages, and a producer that sends small messages for longer than that,
    are not closed."""
    daemon = start_daemon(daemon_config=BOUND_CONFIG + "ingest_message_seconds = 1\n")
    ep, http = daemon.endpoints, daemon.endpoints["http"]
    with Producer(ep["ingest"]) as good, Subscriber(ep["publish"], ["error/", "hb/", "score/"]) as sub:
        wait_heartbeat(sub)
        idle = raw_push(ep["ingest"])
        errors_before = exposition(get(f"http://{http}/metrics")[1]).get("eddy_protocol_errors_total", 0)
        # Four messages of 900 KiB, 850 KiB of each sent: 3.3 MiB of the 4 MiB held.
        held = [half_sent(ep["ingest"], f"slow{i}") for i in range(4)]
        time.sleep(0.2)
        late = raw_push(ep["ingest"])
        late.sendall(short_frame(b"late", more=True) + frame_header(900 * 1024) + b"\2" * (900 * 1024))
        assert errors_until(sub, 1) == [("error/late/", pb.ERROR_CODE_OVER_BUDGET)]
        # One trickles its message on, a byte every 0.2 s, while a producer sends small messages
        # for 2.5 s: the trickler is closed with the stalled, the producer is scored throughout.
        start = time.monotonic()
        sequence, trickling = 0, True
        while time.monotonic() - start < 2.5:
            if trickling:
                try:
                    held[0].sendall(b"\2")
                except OSError:  # closed by the daemon
                    trickling = False
            good.send("good", np.ones((2, 4), np.float32), sequence=sequence)
            assert wait_scores(sub, "good", sequence) is not None
            sequence += 2
            time.sleep(0.2)
        for c in held:
            assert closed_within(c, 3), "a stalled message's connection is still open"
        assert not trickling and time.monotonic() - start < 6
        errors = exposition(get(f"http://{http}/metrics")[1]).get("eddy_protocol_errors_total", 0)
        assert errors - errors_before == 4
        # Their 3.6 MiB are free: a whole 900 KiB message (a SampleBatch of the wrong length, so
        # rejected as undecodable, which shows it was read whole) fits, on the connection that
        # stayed idle through it all.
        idle.sendall(short_frame(b"after", more=True) + frame_header(900 * 1024) + b"\2" * (900 * 1024))
        assert errors_until(sub, 1) == [("error/after/", pb.ERROR_CODE_UNDECODABLE)]
        for c in held + [idle, late]:
            c.close()
    assert daemon.terminate()[0] == 0


def test_a_producer_that_does_not_read_its_pongs_loses_only_the_pongs(start_daemon):
    """A peer that sends PINGs and never reads the PONGs fills its queue: the PONGs that no longer
    fit are dropped (counted), and what it sends after them is still taken and scored. Before, a
    PONG that could not go ended the connection and threw away the messages after its PING,
    uncounted (a producer with ZMQ_HEARTBEAT_IVL that sent its last batch and left lost it)."""
    daemon = start_daemon(daemon_config="max_ingest_connections = 2\n")
    ep, http = daemon.endpoints, daemon.endpoints["http"]
    host, port = ep["ingest"].removeprefix("tcp://").rsplit(":", 1)
    deaf = socket.socket()
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.connect((host, int(port)))
    deaf.sendall(GREETING)
    deaf.settimeout(5)
    greeting = b""
    while len(greeting) < 64:
        greeting += deaf.recv(64 - len(greeting))
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 4) + b"PUSH"
    deaf.sendall(bytes([4, len(ready)]) + ready)
    ping = b"\x04PING\x00\x00" + b"c" * 16
    pings = (bytes([4, len(ping)]) + ping) * 4000
    deaf.settimeout(0.5)

    def metric(name):
        return exposition(get(f"http://{http}/metrics")[1]).get(name, 0)

    errors = metric("eddy_protocol_errors_total")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            deaf.sendall(pings)
        except socket.timeout:
            pass
        if metric("eddy_pongs_dropped_total") > 0:
            break
    else:
        raise AssertionError("no PONG was ever dropped")
    batch = pb.SampleBatch(stream="deaf", sequence=0, dim=4, count=2, values=np.ones(8, np.float32).tobytes())
    with Subscriber(ep["publish"], ["score/deaf/"]) as sub:
        time.sleep(0.3)
        deaf.settimeout(10)
        deaf.sendall(short_frame(b"deaf", more=True) + short_frame(batch.SerializeToString()))
        assert wait_scores(sub, "deaf", 0) is not None, "the message after the PINGs was taken"
    assert metric("eddy_protocol_errors_total") == errors, "the connection was not ended"
    deaf.close()
    assert daemon.terminate()[0] == 0


def test_connections_that_never_finish_their_handshake_make_room_for_a_producer(start_daemon):
    """Peers without a key (or with nothing to say) that open every slot and send nothing held them
    for ingest_handshake_seconds, and reopened them as they timed out: every producer was kept out
    (from review; the old daemon refuses the producer here for the whole 30 s). With every slot
    taken, a newcomer now closes the connection longest in its handshake, once that is a second."""
    daemon = start_daemon(daemon_config="max_ingest_connections = 4\ningest_handshake_seconds = 30\n")
    ep, http = daemon.endpoints, daemon.endpoints["http"]
    host, port = ep["ingest"].removeprefix("tcp://").rsplit(":", 1)
    squatters = [socket.create_connection((host, int(port))) for _ in range(4)]
    time.sleep(1.3)  # past the second a handshake may take before a newcomer closes it
    with Producer(ep["ingest"]) as good, Subscriber(ep["publish"], ["score/"]) as sub:
        time.sleep(0.3)
        good.send("good", np.ones((8, 4), np.float32))
        assert wait_scores(sub, "good", 0) is not None
    evicted = exposition(get(f"http://{http}/metrics")[1]).get("eddy_ingest_connections_evicted_total", 0)
    assert evicted >= 1
    assert sum(closed_within(s, 0.5) for s in squatters) >= 1
    for s in squatters:
        s.close()
    assert daemon.terminate()[0] == 0


def test_connections_idle_past_ingest_idle_seconds_make_room_for_a_producer(start_daemon):
    """Peers that finish their handshake and fall silent held every slot for good (the handshake
    timer is the only one they pass): with all max_ingest_connections taken, a newcomer now closes
    the one quiet longest, if it has been quiet ingest_idle_seconds, and its samples are scored.
    Connections busier than that are never closed for one: the newcomer is refused, as before."""
    daemon = start_daemon(daemon_config="max_ingest_connections = 4\ningest_idle_seconds = 1\n")
    ep, http = daemon.endpoints, daemon.endpoints["http"]

    def metric(name):
        return exposition(get(f"http://{http}/metrics")[1]).get(name, 0)

    silent = [raw_push(ep["ingest"]) for _ in range(4)]
    # At once, every slot is busy enough: a fifth connection is refused.
    refused = metric("eddy_connections_refused_total")
    host, port = ep["ingest"].removeprefix("tcp://").rsplit(":", 1)
    fifth = socket.create_connection((host, int(port)))
    assert closed_within(fifth, 3), "a fifth connection within ingest_idle_seconds is closed"
    assert until(lambda: metric("eddy_connections_refused_total") == refused + 1, 10)
    time.sleep(1.5)  # past ingest_idle_seconds
    with Producer(ep["ingest"]) as good, Subscriber(ep["publish"], ["score/"]) as sub:
        time.sleep(0.3)
        good.send("good", np.ones((8, 4), np.float32))
        assert wait_scores(sub, "good", 0) is not None
    assert metric("eddy_ingest_connections_evicted_total") >= 1
    assert sum(closed_within(s, 0.5) for s in silent) >= 1, "an idle connection was closed to make room"
    for s in silent:
        s.close()
    assert daemon.terminate()[0] == 0
