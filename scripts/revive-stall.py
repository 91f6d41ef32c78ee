#!/usr/bin/env python3
"""How long a stream coming back from expiry holds up every other stream, and how long its own first
sample takes. Its kept state is read, checked and restored off the ingest thread since stop 58 (on
it before).

Starts a daemon (stream_idle_seconds = 2), sends 4,096 samples of dim D to a stream and lets it
expire and be written aside, then sends one sample a few milliseconds apart to a declared stream
`tick` and reads each score back. One sample to the expired name brings it back; the worst `tick`
round trip around that moment, beside the usual one, is the stall; the revived stream's own round
trip is its first score's. `--fresh` sends to a new name instead (a stream created from nothing),
the cost without the file. Several binaries (`--eddy a,b`) are run in turn, `--rounds` times.

    .venv/bin/python scripts/revive-stall.py [--eddy .build/release/eddy[,other]] [--dims 8,512,2000] [--fresh] [--rounds 1]
"""
import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocols" / "python"))
from eddy_client import Producer, Subscriber  # noqa: E402
from eddy_client.local import LocalDaemon  # noqa: E402


def stall(eddy, dim, fresh):
    with tempfile.TemporaryDirectory() as data:
        conf = Path(data) / "eddy.conf"
        conf.write_text("stream_idle_seconds = 2\nheartbeat_seconds = 0.2\n[stream.tick]\ndim = 1\n")
        with LocalDaemon(eddy, Path(data) / "state", conf) as d:
            ctx = zmq.Context()
            try:
                sub = Subscriber(d.endpoints["publish"], ["score/tick/"], context=ctx)
                own = Subscriber(d.endpoints["publish"], ["score/fresh/" if fresh else "score/big/"], context=ctx)
                big, tick = Producer(d.endpoints["ingest"], context=ctx), Producer(d.endpoints["ingest"], context=ctx)
                x = np.random.default_rng(0).normal(size=(4096, dim)).astype(np.float32)
                for i in range(0, 4096, 256):
                    big.send("big", x[i:i + 256])
                while own.recv(timeout_ms=500) is not None:
                    pass  # its scores before expiry, read off
                time.sleep(6)  # expired after 2 s idle, then written aside by the trainer
                rounds, stop = [], threading.Event()

                def ticker():
                    seq = 0
                    while not stop.is_set():
                        t = time.perf_counter()
                        tick.send("tick", np.array([[np.sin(seq / 5)]], np.float32), sequence=seq)
                        sub.recv(timeout_ms=2000)
                        rounds.append((t, time.perf_counter() - t))
                        seq += 1
                        time.sleep(0.002)

                th = threading.Thread(target=ticker)
                th.start()
                time.sleep(1.0)
                at = time.perf_counter()
                big.send("fresh" if fresh else "big", x[:1], sequence=0 if fresh else 10000)
                came = own.recv(timeout_ms=5000)
                first = time.perf_counter() - at if came is not None else float("nan")
                time.sleep(1.5)
                stop.set()
                th.join()
                before = [r for t, r in rounds if t < at]
                around = [r for t, r in rounds if at - 0.05 <= t < at + 0.5]
                return np.median(before), max(before), max(around), first
            finally:
                ctx.destroy(linger=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    ap.add_argument("--dims", default="8,512,2000")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    what = "creation" if args.fresh else "revival"
    print(f"{'binary':>24}  {'dim':>6}  {'tick p50 (ms)':>14}  {'tick max (ms)':>14}  {'tick max around ' + what + ' (ms)':>32}  {'its first score (ms)':>21}")
    for dim in (int(v) for v in args.dims.split(",")):
        for _ in range(args.rounds):
            for eddy in args.eddy.split(","):
                p50, worst, around, first = stall(eddy, dim, args.fresh)
                print(f"{eddy[-24:]:>24}  {dim:>6}  {p50 * 1e3:14.2f}  {worst * 1e3:14.2f}  {around * 1e3:32.1f}  {first * 1e3:21.1f}", flush=True)


if __name__ == "__main__":
    main()
