#!/usr/bin/env python3
"""Soak: the daemon under steady traffic and client churn, its RSS and open descriptors sampled.

    .venv/bin/python scripts/soak.py [--seconds 600] [--rate 5000] [--binary .build/release/eddy]

Producers send to 8 streams (dims 1 to 64) at --rate samples per second in all; every second a
subscriber and a snapshot client connect, do one thing and leave, and a short-lived producer sends
one batch to a stream of its own (so streams come and go under `stream_idle_seconds` = 20 and
`max_streams` = 32). Prints RSS and descriptors every --every seconds and a summary: RSS at the
first quarter, its peak and end, its slope over the second half (MB per hour), and descriptors
at start and end. Exits 1 if descriptors grow by more than 16 or RSS passes --rss-limit MB.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocols" / "python"))
import numpy as np  # noqa: E402
import zmq  # noqa: E402
from eddy_client import Producer, Subscriber, fetch_snapshot  # noqa: E402

STREAMS = {f"s{i}": dim for i, dim in enumerate([1, 1, 4, 8, 8, 16, 32, 64])}


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--every", type=float, default=30)
    ap.add_argument("--rss-limit", type=float, default=2048)
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "eddy"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="eddy-soak-")
    config = Path(work) / "eddy.conf"
    config.write_text(f"data_dir = {work}/data\ncheckpoint_every_seconds = 30\nstream_idle_seconds = 20\n"
                      "max_streams = 32\nheartbeat_seconds = 1\n")
    daemon = subprocess.Popen([args.binary, "serve", "--config", str(config), "--ingest", "tcp://127.0.0.1:*",
                               "--publish", "tcp://127.0.0.1:*", "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0",
                               "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    ep = dict(daemon.stdout.readline().split() for _ in range(3))
    context = zmq.Context()
    stop = threading.Event()
    sent = [0]

    def produce():
        rng = np.random.default_rng(1)
        batch = 32
        period = batch * len(STREAMS) / args.rate
        with Producer(ep["ingest"], context=context, linger_ms=0) as p:
            t, next_send = 0, time.monotonic()
            while not stop.is_set():
                for name, dim in STREAMS.items():
                    x = np.sin(np.arange(t, t + batch)[:, None] * 0.02 + np.arange(dim)) + 0.05 * rng.normal(size=(batch, dim))
                    p.send(name, x.astype(np.float32))
                    sent[0] += batch
                t += batch
                next_send += period
                time.sleep(max(0.0, next_send - time.monotonic()))

    def churn():
        n = 0
        while not stop.is_set():
            n += 1
            with Subscriber(ep["publish"], ["hb/"], context=context) as s:
                s.recv(timeout_ms=1500)
            try:
                fetch_snapshot(ep["snapshots"], "s3", timeout_ms=2000, context=context)
            except (LookupError, TimeoutError):
                pass
            with Producer(ep["ingest"], context=context, linger_ms=1000) as p:
                p.send(f"visitor-{n % 64}", np.zeros((4, 2), np.float32))
            time.sleep(1.0)

    threads = [threading.Thread(target=produce), threading.Thread(target=churn)]
    for t in threads:
        t.start()
    samples = []
    began = time.monotonic()
    next_print = began
    try:
        while time.monotonic() - began < args.seconds:
            time.sleep(1.0)
            now = time.monotonic() - began
            samples.append((now, rss_mb(daemon.pid), descriptors(daemon.pid)))
            if time.monotonic() >= next_print:
                next_print += args.every
                print(f"{now:6.0f} s  rss {samples[-1][1]:7.1f} MB  fds {samples[-1][2]:4d}  sent {sent[0]}", flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join()
        daemon.terminate()
        code = daemon.wait(timeout=120)
        context.destroy(linger=0)
    times = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    fds = [s[2] for s in samples]
    half = times >= times[-1] / 2
    slope = np.polyfit(times[half], rss[half], 1)[0] * 3600 if half.sum() > 2 else float("nan")
    quarter = rss[times >= times[-1] / 4][0]
    last = rss[times >= times[-1] * 2 / 3]
    print(f"soak {times[-1]:.0f} s, {sent[0]} samples at {sent[0] / times[-1]:.0f}/s: rss {quarter:.1f} MB at a quarter, "
          f"peak {rss.max():.1f} MB, end {rss[-1]:.1f} MB, last third {last.min():.1f} to {last.max():.1f} MB, "
          f"second-half slope {slope:+.1f} MB/h; "
          f"descriptors {fds[0]} -> {fds[-1]} (max {max(fds)}); SIGTERM exit {code}")
    bad = fds[-1] - fds[0] > 16 or rss.max() > args.rss_limit or code != 0
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
