#!/usr/bin/env python3
"""A seeded, labelled corpus of bursty count streams (requests, messages, tweets per interval) for `eddy eval`.

Usage: python scripts/make-count-corpus.py --out DIR --seed N [--series K]   (numpy only; K defaults to 32)

Count streams are where a detector that assumes Gaussian errors fires on every burst: their normal
behaviour includes short, heavy-tailed bursts (a retweet storm, a retry wave) that an operator does
not want paged for. This corpus makes that behaviour explicit, so calibration can be measured on it:

  normal   rate(t) = level x daily cycle x slow drift; counts are negative-binomial around the rate
           (Poisson with a gamma-distributed rate: overdispersed); bursts start with a small
           probability per step, last 1 to 3 steps and multiply the rate by 1 + Pareto(alpha) x size
           (alpha 1.2 to 2: heavy tails). Bursts are normal behaviour, not labelled.
  labelled surge (rate x 4 to 10 for 20 to 120 steps: a burst that does not end), level shift (x 0.3 or
           x 2.5 to 4 for 150 to 500 steps), outage (x 0 to 0.05 for 10 to 100 steps), lost cycle (the
           daily cycle flattened for one to two periods).

Families are kinds of stream, so leaving one out means testing on a kind never seen:
  hourly       period 24, level 50 to 500, 1,500 to 4,000 rows
  five-minute  period 288, level 20 to 200, 3,000 to 8,000 rows
  sparse       period 24 or 288, level 0.5 to 5 (mostly zeros and ones), 2,000 to 6,000 rows
  volume       period 288, level 1,000 to 50,000, strong bursts, 3,000 to 8,000 rows

Layout (DIR must be empty or absent; the same seed gives the same bytes with the same numpy):
  DIR/<family>/<family>-NN.csv  `timestamp,value,is_anomaly` (timestamp = row index)
  DIR/MANIFEST.json             per file: family, length, period, level, burst settings, anomalies (kind, start, length)
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

FAMILIES = ["hourly", "five-minute", "sparse", "volume"]
KINDS = ["surge", "level-shift", "outage", "lost-cycle"]
GAP = 20


def plan(rng, family):
    if family == "hourly":
        period, level, n = 24, rng.uniform(50, 500), int(rng.integers(150, 401)) * 10
    elif family == "five-minute":
        period, level, n = 288, rng.uniform(20, 200), int(rng.integers(300, 801)) * 10
    elif family == "sparse":
        period, level, n = int(rng.choice([24, 288])), rng.uniform(0.5, 5), int(rng.integers(200, 601)) * 10
    else:
        period, level, n = 288, rng.uniform(1_000, 50_000), int(rng.integers(300, 801)) * 10
    strong = family == "volume"
    return {"period": period, "level": round(float(level), 3), "length": n,
            "cycle": round(float(rng.uniform(0.2, 0.8)), 3),
            "dispersion": round(float(rng.uniform(3, 30)), 3),  # gamma shape: smaller = more overdispersed
            "burst_probability": round(float(rng.uniform(1 / 300, 1 / 40) * (2 if strong else 1)), 5),
            "burst_alpha": round(float(rng.uniform(1.2, 2.0)), 3),
            "burst_size": round(float(rng.uniform(0.5, 2.0) * (2 if strong else 1)), 3)}


def generate(rng, p, counts):
    n, period = p["length"], p["period"]
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    cycle = 1 + p["cycle"] * np.sin(2 * np.pi * t / period + phase)
    drift = np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    rate = p["level"] * cycle * drift
    # Normal bursts: heavy-tailed multipliers over 1 to 3 steps.
    burst = np.ones(n)
    for s in np.flatnonzero(rng.random(n) < p["burst_probability"]):
        burst[s:s + int(rng.integers(1, 4))] *= 1 + (rng.pareto(p["burst_alpha"]) + 0.2) * p["burst_size"]
    labels = np.zeros(n, dtype=int)
    anomalies = []
    lo = int(0.2 * n)
    for _ in range(int(rng.integers(1, 4))):
        kind = min(KINDS, key=lambda k: (counts[k], rng.random()))
        length = {"surge": (20, 120), "level-shift": (150, 500), "outage": (10, 100),
                  "lost-cycle": (period, 2 * period)}[kind]
        length = int(rng.integers(length[0], length[1] + 1))
        free = [s for s in range(lo, n - length - GAP)
                if not labels[max(0, s - GAP):s + length + GAP].any()]
        if not free:
            continue
        s = int(rng.choice(free))
        w = slice(s, s + length)
        if kind == "surge":
            factor = rng.uniform(4, 10)
            rate[w] *= factor
        elif kind == "level-shift":
            factor = 0.3 if rng.random() < 0.3 else rng.uniform(2.5, 4)
            rate[w] *= factor
        elif kind == "outage":
            factor = rng.uniform(0, 0.05)
            rate[w] *= factor
        else:
            factor = 0.0
            rate[w] /= cycle[w]
        labels[w] = 1
        counts[kind] += 1
        anomalies.append({"kind": kind, "start": s, "length": length, "factor": round(float(factor), 3)})
    shape = p["dispersion"]
    values = rng.poisson(rate * burst * rng.gamma(shape, 1 / shape, n))
    return values, labels, sorted(anomalies, key=lambda a: a["start"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--series", type=int, default=32)
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty")
    rng = np.random.default_rng([args.seed, 7])
    counts = {k: 0 for k in KINDS}
    entries = []
    for i in range(args.series):
        family = FAMILIES[i % len(FAMILIES)]
        p = plan(rng, family)
        values, labels, anomalies = generate(rng, p, counts)
        name = f"{family}/{family}-{i:02d}.csv"
        (args.out / family).mkdir(parents=True, exist_ok=True)
        with open(args.out / name, "w") as f:
            f.write("timestamp,value,is_anomaly\n")
            f.writelines(f"{j},{v},{l}\n" for j, (v, l) in enumerate(zip(values, labels)))
        entries.append({"file": name, "family": family, **p, "anomalies": anomalies})
    manifest = {"generator": "scripts/make-count-corpus.py", "seed": args.seed, "numpy_version": np.__version__,
                "anomaly_counts": counts, "files": entries}
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(entries)} files in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
