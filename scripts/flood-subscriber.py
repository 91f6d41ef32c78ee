#!/usr/bin/env python3
"""A subscriber that stops reading during a flood: the daemon's RSS with its subscriber queue
bounded (publish_queue_bytes) and not.

    .venv/bin/python scripts/flood-subscriber.py [--seconds 20] [--queue 128M] [--binary .build/release/eddy]

One producer sends 256-sample batches of dim 8 as fast as the daemon takes them; one subscriber to
every topic connects and never reads. Prints the daemon's RSS each second and its growth.
"""
import argparse
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
from eddy_client import Producer  # noqa: E402


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--queue", default="128M")
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "eddy"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="eddy-flood-")
    config = Path(work) / "eddy.conf"
    config.write_text(f'data_dir = ""\npublish_queue_bytes = {args.queue}\n')
    daemon = subprocess.Popen([args.binary, "serve", "--config", str(config), "--ingest", "tcp://127.0.0.1:*",
                               "--publish", "tcp://127.0.0.1:*", "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0",
                               "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    ep = dict(daemon.stdout.readline().split() for _ in range(3))
    context = zmq.Context()
    silent = context.socket(zmq.SUB)
    silent.setsockopt(zmq.RCVHWM, 1)  # what it holds itself is not the daemon's
    silent.setsockopt(zmq.RCVBUF, 4096)
    silent.setsockopt(zmq.SUBSCRIBE, b"")
    silent.connect(ep["publish"])
    time.sleep(0.5)
    stop = threading.Event()
    sent = [0]

    def flood():
        x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
        with Producer(ep["ingest"], context=context, linger_ms=0) as p:
            while not stop.is_set():
                p.send("flood", x)
                sent[0] += 256

    t = threading.Thread(target=flood)
    start_rss = rss_mb(daemon.pid)
    t.start()
    samples = []
    for i in range(int(args.seconds)):
        time.sleep(1)
        samples.append(rss_mb(daemon.pid))
    stop.set()
    t.join()
    daemon.terminate()
    daemon.wait(timeout=60)
    context.destroy(linger=0)
    print(f"publish_queue_bytes {args.queue}: {sent[0] / args.seconds:.0f} samples/s; RSS {start_rss:.0f} MB at start, "
          f"{samples[len(samples) // 2]:.0f} MB at {len(samples) // 2} s, {samples[-1]:.0f} MB at {len(samples)} s "
          f"(peak {max(samples):.0f} MB)")


if __name__ == "__main__":
    main()
