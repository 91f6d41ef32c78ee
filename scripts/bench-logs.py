#!/usr/bin/env python3
"""Eddy's template miner, and a log stream's whole ingest (mining, features, scoring: `eddy bench
logs`), against Drain3 (PyPI `drain3`) mining the same log files, alternating, in one invocation:
lines per second on one core, and Eddy's ratios.

    .venv/bin/python scripts/bench-logs.py [--rounds 5] [--seconds 3] [FILE...]

Files default to ../shared/data/loghub/*.log. Drain3 runs with its defaults plus masking of the
same kinds of values Eddy masks (numbers, hex, IPv4 with port, UUIDs), as a user would configure it.
"""
import argparse
import glob
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DRAIN3_PEER = r'''
import sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from drain3.masking import MaskingInstruction
files, seconds = sys.argv[2:], float(sys.argv[1])
logs = [open(f, encoding="utf-8", errors="replace").read().splitlines() for f in files]
def config():
    c = TemplateMinerConfig()
    c.profiling_enabled = False
    c.masking_instructions = [
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))((?=[^A-Za-z0-9])|$)", "*"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(:\d+)?)((?=[^A-Za-z0-9])|$)", "*"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "*"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+(\.\d+)?)((?=[^A-Za-z0-9])|$)", "*"),
    ]
    return c
def one_pass():
    n = 0
    for lines in logs:
        m = TemplateMiner(config=config())
        for line in lines:
            m.add_log_message(line)
        n += len(lines)
    return n
one_pass()
start, lines = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    lines += one_pass()
print(lines / (time.perf_counter() - start))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(str(ROOT.parent / "shared" / "data" / "loghub" / "*.log")))
    if subprocess.run([sys.executable, "-c", "import drain3"], capture_output=True).returncode != 0:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "drain3"])
    eddy, ingest, drain3 = [], [], []
    for _ in range(args.rounds):
        out = subprocess.check_output([args.eddy, "bench", "mine", "--seconds", str(args.seconds), "--json", *files])
        eddy.append(json.loads(out)["lines_per_second"])
        drain3.append(float(subprocess.check_output([sys.executable, "-c", DRAIN3_PEER, str(args.seconds), *files])))
        out = subprocess.check_output([args.eddy, "bench", "logs", "--seconds", str(args.seconds), "--json", *files])
        ingest.append(json.loads(out)["lines_per_second"])
    e, i, d = statistics.median(eddy), statistics.median(ingest), statistics.median(drain3)
    # The machine's speed drifts from minute to minute: each round's ratios are taken within the
    # round (Drain3 runs between the two Eddy runs), and the ratio reported is their median.
    mine_ratio = statistics.median(x / y for x, y in zip(eddy, drain3))
    ingest_ratio = statistics.median(x / y for x, y in zip(ingest, drain3))
    print(f"{len(files)} files, {args.rounds} rounds: Drain3 mining {d:,.0f} lines/s; Eddy mining {e:,.0f} lines/s "
          f"({mine_ratio:.1f}x), Eddy's log-stream ingest (mining, features, scoring) {i:,.0f} lines/s ({ingest_ratio:.1f}x) "
          f"(rounds: mining {[int(x) for x in eddy]}, ingest {[int(x) for x in ingest]}, Drain3 {[int(x) for x in drain3]}; "
          f"ingest ratios {[round(x / y, 1) for x, y in zip(ingest, drain3)]})")


if __name__ == "__main__":
    main()
