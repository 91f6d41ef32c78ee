#!/usr/bin/env python3
"""How long one stream's moment holds up every other stream: a stream coming back from expiry, a
new stream, a checkpoint.

Starts a daemon, sends 8,192 samples of dim D to a stream `big`, then sends one sample a few
milliseconds apart to a declared stream `tick` and reads each score back: the worst `tick` round
trip around the moment, beside the usual one, is the stall.

- `revival` (the default): `big` is let expire (stream_idle_seconds = 2) and written aside; one
  sample to it brings it back. Its kept state is read, checked and restored off the ingest thread
  since stop 58 (on it before). The last column is the revived stream's own first score.
- `fresh`: one sample to a new name (a stream made from nothing); the last column is its first score.
- `checkpoint`: a checkpoint every 2 s while `big` takes one sample every ten ticks, for 12 s (six
  checkpoints); the last column counts the round trips over 20 ms.

Several binaries (`--eddy a,b`) are run in turn, `--rounds` times.

    .venv/bin/python scripts/stall.py [--what revival|fresh|checkpoint] [--eddy .build/release/eddy[,other]] [--dims 8,512,2000] [--rounds 1]
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

ROWS = 8192


def stall(eddy, dim, what):
    """The usual and worst `tick` round trips before the moment, the worst around it, and the last
    column (seconds, or a count for `checkpoint`)."""
    with tempfile.TemporaryDirectory() as data:
        conf = Path(data) / "eddy.conf"
        every = 2 if what == "checkpoint" else 3600
        conf.write_text(f"stream_idle_seconds = {3600 if what == 'checkpoint' else 2}\ncheckpoint_every_seconds = {every}\n"
                        "heartbeat_seconds = 0.2\n[stream.tick]\ndim = 1\n")
        with LocalDaemon(eddy, Path(data) / "state", conf) as d:
            ctx = zmq.Context()
            try:
                sub = Subscriber(d.endpoints["publish"], ["score/tick/"], context=ctx)
                own = Subscriber(d.endpoints["publish"], ["score/fresh/" if what == "fresh" else "score/big/"], context=ctx)
                big, tick = Producer(d.endpoints["ingest"], context=ctx), Producer(d.endpoints["ingest"], context=ctx)
                x = np.random.default_rng(0).normal(size=(ROWS, dim)).astype(np.float32)
                for i in range(0, ROWS, 256):
                    big.send("big", x[i:i + 256], sequence=i)
                while own.recv(timeout_ms=500) is not None:
                    pass  # its scores so far, read off
                if what == "revival":
                    time.sleep(6)  # expired after 2 s idle, then written aside by the trainer
                rounds, stop = [], threading.Event()
                feed = what == "checkpoint"

                def ticker():
                    seq = 0
                    while not stop.is_set():
                        t = time.perf_counter()
                        tick.send("tick", np.array([[np.sin(seq / 5)]], np.float32), sequence=seq)
                        sub.recv(timeout_ms=2000)
                        rounds.append((t, time.perf_counter() - t))
                        seq += 1
                        if feed and seq % 10 == 0:
                            big.send("big", x[seq // 10 % ROWS][None], sequence=ROWS + seq // 10)
                        time.sleep(0.002)

                th = threading.Thread(target=ticker)
                th.start()
                time.sleep(1.0)
                at = time.perf_counter()
                if what == "checkpoint":
                    time.sleep(12)
                    last = None
                else:
                    big.send("fresh" if what == "fresh" else "big", x[:1], sequence=0 if what == "fresh" else 2 * ROWS)
                    came = own.recv(timeout_ms=5000)
                    last = time.perf_counter() - at if came is not None else float("nan")
                    time.sleep(1.5)
                stop.set()
                th.join()
                before = [r for t, r in rounds if t < at]
                around = [r for t, r in rounds if at - 0.05 <= t < (at + 0.5 if last is not None else at + 12)]
                if last is None:
                    last = sum(r > 0.02 for r in around)
                return np.median(before), max(before), max(around), last
            finally:
                ctx.destroy(linger=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    ap.add_argument("--what", choices=["revival", "fresh", "checkpoint"], default="revival")
    ap.add_argument("--dims", default="8,512,2000")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    last = {"revival": "its first score (ms)", "fresh": "its first score (ms)", "checkpoint": "ticks over 20 ms"}[args.what]
    print(f"{'binary':>24}  {'dim':>6}  {'tick p50 (ms)':>14}  {'tick max (ms)':>14}  {'tick max around ' + args.what + ' (ms)':>32}  {last:>21}")
    for dim in (int(v) for v in args.dims.split(",")):
        for _ in range(args.rounds):
            for eddy in args.eddy.split(","):
                p50, worst, around, tail = stall(eddy, dim, args.what)
                shown = f"{tail:21d}" if args.what == "checkpoint" else f"{tail * 1e3:21.1f}"
                print(f"{eddy[-24:]:>24}  {dim:>6}  {p50 * 1e3:14.2f}  {worst * 1e3:14.2f}  {around * 1e3:32.1f}  {shown}", flush=True)


if __name__ == "__main__":
    main()
