#!/usr/bin/env python3
"""Floods a daemon's ingest socket in every shape and reports how far its resident memory grows:
many frames in one message, frames far over max_message_bytes from many connections, messages
left half-sent on many connections, and more connections than max_ingest_connections. Each shape
runs against a fresh daemon on its default settings (whose ingest bound is
max_ingest_connections x ingest_connection_bytes + ingest_buffer_bytes = 192 MiB).

    .venv/bin/python scripts/flood-ingest.py [--eddy .build/release/eddy] [--scale 1.0]

Any `eddy` binary works, an older one included, which is how the figures in docs/operations.md
compare this ingest with libzmq's own PULL socket.
"""
import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocols" / "python"))
from eddy_client.local import LocalDaemon  # noqa: E402
from eddy_client.zmtp import frame_header, raw_push, short_frame  # noqa: E402

MiB = 1 << 20


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def many_frames(endpoint, scale, ctx):
    p = ctx.socket(zmq.PUSH)
    p.connect(endpoint)
    chunk = b"\0" * (512 * 1024)
    p.send_multipart([b"many"] + [chunk] * int(2048 * scale))  # 1 GiB in one message
    return [p]


def oversized(endpoint, scale, ctx):
    out = []
    for i in range(int(32 * scale)):
        p = ctx.socket(zmq.PUSH)
        p.connect(endpoint)
        p.send_multipart([f"big{i}".encode(), b"\1" * (30 * MiB)])  # under twice max_message_bytes
        out.append(p)
    return out


def half_sent(endpoint, scale, ctx):
    out = []
    for i in range(int(64 * scale)):
        try:
            s = raw_push(endpoint)
        except OSError:
            continue
        s.sendall(short_frame(f"slow{i}".encode(), more=True) + frame_header(16 * MiB) + b"\2" * (12 * MiB))
        out.append(s)
    return out


def connections(endpoint, scale, ctx):
    out = []
    for _ in range(int(1500 * scale)):
        try:
            s = raw_push(endpoint)
            s.sendall(short_frame(b"x", more=True) + frame_header(200 * 1024) + b"\3" * (100 * 1024))  # never whole
            out.append(s)
        except OSError:
            pass
    return out


def measure(eddy, shape, scale):
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "eddy.conf"
        config.write_text("")
        d = LocalDaemon(eddy, Path(tmp) / "data", config)
        pid = d.process.pid
        time.sleep(0.5)
        base, peak, stop = rss(pid), [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss(pid))
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        ctx = zmq.Context()
        held = shape(d.endpoints["ingest"], scale, ctx)
        time.sleep(3)
        stop.set()
        t.join()
        alive = d.process.poll() is None
        for h in held:
            h.close(**({"linger": 0} if isinstance(h, zmq.Socket) else {}))
        ctx.term()
        d.terminate() if alive else None
        return {"rss_start_mib": round(base / MiB, 1), "growth_mib": round((peak[0] - base) / MiB, 1), "alive": alive}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of connections
    out = {}
    for shape in (many_frames, oversized, half_sent, connections):
        out[shape.__name__] = measure(a.eddy, shape, a.scale)
        print(shape.__name__, out[shape.__name__], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
