#!/usr/bin/env python3
"""Kill -9 loop: the daemon, fed continuously and checkpointing every half second, is killed at
random moments (many of them mid-checkpoint) and restarted on the same data directory.

    .venv/bin/python scripts/kill-loop.py [--kills 50] [--binary .build/release/eddy]

Each restart must: start (print its endpoints), leave no temporary checkpoint file, move nothing
aside as damaged, restore every stream with an accepted count no lower than the previous restart's,
and serve the restored models at once, at a version above every version of that model a subscriber
saw published before the kill (or at the same version with the same weights). Prints one line per kill and a summary; exits 1 on a failure.
"""
import argparse
import glob
import os
import random
import signal
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

CONFIG = """data_dir = {data}
checkpoint_every_seconds = 0.5
checkpoints_kept = 2
heartbeat_seconds = 0.2
snapshot_every_seconds = 0.5
[stream]
warmup_samples = 200
buffer_capacity = 2048
"""
STREAMS = {"pump": 8, "temp": 1, "wide": 32}


def start(binary, config):
    p = subprocess.Popen([binary, "serve", "--config", config, "--ingest", "tcp://127.0.0.1:*",
                          "--publish", "tcp://127.0.0.1:*", "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0",
                          "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    endpoints = {}
    began = time.monotonic()
    while len(endpoints) < 3:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"eddy serve exited with {p.wait()}")
        name, endpoint = line.split()
        endpoints[name] = endpoint
    return p, endpoints, time.monotonic() - began


def heartbeat(endpoint, context):
    with Subscriber(endpoint, ["hb/"], context=context) as s:
        got = s.recv(timeout_ms=5000)
        if got is None:
            raise RuntimeError("no heartbeat")
        return got[1]


def watch(endpoint, stop, context, seen):
    """Records the highest version of each stream's models published, with its checksum."""
    with Subscriber(endpoint, ["snapshot/"], context=context) as s:
        while not stop.is_set():
            got = s.recv(timeout_ms=50)
            if got and got[1] is not None:
                m = got[1]
                key = (m.stream, "moco" if m.kind == 2 else "autoencoder")
                if m.version >= seen.get(key, (0, 0))[0]:
                    seen[key] = (m.version, m.checksum)


def feed(endpoint, stop, context):
    rng = np.random.default_rng()
    with Producer(endpoint, context=context, linger_ms=0) as p:
        t = 0
        while not stop.is_set():
            for name, dim in STREAMS.items():
                x = np.sin(np.arange(t, t + 64)[:, None] * 0.05 + np.arange(dim)) + 0.05 * rng.normal(size=(64, dim))
                p.send(name, x.astype(np.float32))
            t += 64
            time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "eddy"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    random.seed(args.seed)
    work = tempfile.mkdtemp(prefix="eddy-kill-")
    data = os.path.join(work, "data")
    config = os.path.join(work, "eddy.conf")
    Path(config).write_text(CONFIG.format(data=data))
    context = zmq.Context()
    failures, starts, mid_checkpoint, restored_counts = [], [], 0, {}
    seen, versions_checked = {}, 0  # (stream, model) -> (highest version published, its checksum)
    for kill in range(args.kills + 1):
        p, ep, took = start(args.binary, config)
        starts.append(took)
        hb = heartbeat(ep["publish"], context)
        counts = {s.stream: s.accepted for s in hb.streams}
        problems = []
        if glob.glob(os.path.join(data, "*.tmp")):
            problems.append("temporary file left after start")
        if glob.glob(os.path.join(data, "*.damaged")):
            problems.append("a checkpoint was damaged")
        for name, before in restored_counts.items():
            if counts.get(name, 0) < before:
                problems.append(f"{name} went back from {before} to {counts.get(name, 0)} accepted")
        if kill > 1:
            for name in STREAMS:  # restored models are served before the stream trains again
                for model in ("autoencoder", "moco"):
                    try:
                        m = fetch_snapshot(ep["snapshots"], name, model, timeout_ms=3000, context=context).message
                    except LookupError as e:
                        problems.append(f"{name} {model}: {e}")
                        continue
                    version, checksum = seen.get((name, model), (0, 0))
                    versions_checked += 1
                    if m.version < version or (m.version == version and m.checksum != checksum):
                        problems.append(f"{name} {model} restored at version {m.version}, "
                                        f"{version} was published before the kill")
        restored_counts = counts
        if kill == args.kills:
            p.send_signal(signal.SIGTERM)
            code = p.wait(timeout=60)
            if code != 0:
                problems.append(f"SIGTERM exit {code}")
        else:
            stop = threading.Event()
            producer = threading.Thread(target=feed, args=(ep["ingest"], stop, context))
            watcher = threading.Thread(target=watch, args=(ep["publish"], stop, context, seen))
            watcher.start()
            producer.start()
            time.sleep(random.uniform(0.3, 2.5))
            # Kill while a checkpoint is being written when one can be caught.
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline and not glob.glob(os.path.join(data, "*.tmp")):
                time.sleep(0.001)
            caught = bool(glob.glob(os.path.join(data, "*.tmp")))
            mid_checkpoint += caught
            p.send_signal(signal.SIGKILL)
            p.wait()
            stop.set()
            producer.join()
            watcher.join()
        print(f"start {kill + 1}: {took * 1000:.0f} ms, restored {sum(counts.values())} samples"
              + (", killed mid-checkpoint" if kill < args.kills and caught else "")
              + (f"  FAILED: {'; '.join(problems)}" if problems else ""), flush=True)
        failures += problems
    context.destroy(linger=0)
    print(f"{args.kills} kills ({mid_checkpoint} mid-checkpoint), {args.kills + 1} starts: "
          f"median start {sorted(starts)[len(starts) // 2] * 1000:.0f} ms, max {max(starts) * 1000:.0f} ms; "
          f"{versions_checked} restored versions checked against those published; {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
