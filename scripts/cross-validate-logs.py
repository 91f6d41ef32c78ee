#!/usr/bin/env python3
"""Log streams' defaults by leaving one system out.

    scripts/cross-validate-logs.py LOGHUB_DIR [--seeds 1,2,3] [--out out/cv-logs]

Injects faults (scripts/log-faults.py) into every LogHub sample under LOGHUB_DIR with each seed,
runs `eddy eval --log` over the whole set once per point of a grid of log-signal settings, and then,
for each system, picks the point with the best event recall on the other systems among those
within a false-alarm budget (--budget, false alarms per 10,000 lines; if none is, the fewest false
alarms) and reports the held-out system's figures at it: fold figures, never figures on what was tuned on. The
last table is the grid's points by how often the folds chose them. Needs .build/release/eddy.
"""
import argparse
import collections
import glob
import itertools
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EDDY = os.environ.get("EDDY", os.path.join(HERE, "..", ".build", "release", "eddy"))
GRID = {
    "template_margin": [0.5, 1.0, 1.5, 2.0, 2.5],
    "burst_ratio": [5, 10, 20],
    "parameter_margin": [2.3, 4.6],
}


def f1(found, events, false_alarms):
    """Event F1 as `eddy eval` has it: precision is events found over events found and false alarms."""
    p = found / (found + false_alarms) if found + false_alarms else 1.0
    r = found / events if events else 1.0
    return 0.0 if p + r == 0 else 2 * p * r / (p + r), p, r


def run_grid(args):
    corpus = os.path.join(args.out, "corpus")
    os.makedirs(corpus, exist_ok=True)
    systems = []
    for log in sorted(glob.glob(os.path.join(args.loghub, "*_2k.log"))):
        system = os.path.basename(log)[: -len("_2k.log")]
        systems.append(system)
        for seed in args.seeds.split(","):
            tmp = os.path.join(args.out, "tmp")
            subprocess.run([sys.executable, os.path.join(HERE, "log-faults.py"), log, tmp, "--seed", seed],
                           check=True, stderr=subprocess.DEVNULL)
            for ext in (".log", ".labels"):
                os.replace(os.path.join(tmp, os.path.basename(log)[:-4] + ext),
                           os.path.join(corpus, f"{system}_s{seed}{ext}"))

    keys = list(GRID)
    points = list(itertools.product(*(GRID[k] for k in keys)))
    results = {}
    for n, point in enumerate(points):
        config = os.path.join(args.out, "grid.conf")
        with open(config, "w") as f:
            f.write("[stream]\n" + "".join(f"{k} = {v}\n" for k, v in zip(keys, point)))
        out = subprocess.run([EDDY, "eval", "--log", corpus, "--config", config, "--json"],
                             check=True, capture_output=True, text=True).stdout
        results[point] = json.loads(out)["files"]
        print(f"grid {n + 1}/{len(points)} {dict(zip(keys, point))}", file=sys.stderr)

    return keys, points, results, systems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("loghub")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default="out/cv-logs")
    ap.add_argument("--budget", type=float, default=40.0)
    ap.add_argument("--reuse", action="store_true", help="choose again from the last run's results.json")
    args = ap.parse_args()
    saved = os.path.join(args.out, "results.json")
    if args.reuse:
        with open(saved) as f:
            d = json.load(f)
        keys, points = d["keys"], [tuple(p) for p in d["points"]]
        results = dict(zip(points, d["results"]))
        systems = sorted({n.rsplit("_s", 1)[0] for n in d["results"][0]})
    else:
        keys, points, results, systems = run_grid(args)
        with open(saved, "w") as f:
            json.dump({"keys": keys, "points": [list(p) for p in points], "results": [results[p] for p in points]}, f)

    def summed(point, files):
        c = collections.Counter()
        kinds = collections.Counter()
        for name in files:
            r = results[point][name]
            for k in ("found", "events", "alerts", "false_alarms", "lines"):
                c[k] += r[k]
            for kind, v in r["by_kind"].items():
                kinds[(kind, "found")] += v["found"]
                kinds[(kind, "events")] += v["events"]
        return c, kinds

    names = list(next(iter(results.values())).keys())
    chosen = collections.Counter()
    total, total_kinds = collections.Counter(), collections.Counter()
    print("held-out system   chosen point                                    F1    P     R     FA/10k")
    for system in systems:
        held = [n for n in names if n.startswith(system + "_s")]
        train = [n for n in names if n not in held]
        def merit(p):
            c = summed(p, train)[0]
            rate = 1e4 * c["false_alarms"] / c["lines"]
            return (rate <= args.budget, c["found"] / c["events"] if rate <= args.budget else -rate)
        best = max(points, key=merit)
        chosen[best] += 1
        c, kinds = summed(best, held)
        total += c
        total_kinds += kinds
        score, p, r = f1(c["found"], c["events"], c["false_alarms"])
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, best))
        print(f"{system:17s} {label:47s} {score:.2f}  {p:.2f}  {r:.2f}  {1e4 * c['false_alarms'] / c['lines']:.1f}")
    score, p, r = f1(total["found"], total["events"], total["false_alarms"])
    print(f"{'all folds':17s} {'':47s} {score:.2f}  {p:.2f}  {r:.2f}  {1e4 * total['false_alarms'] / total['lines']:.1f}")
    kinds = sorted({k for k, _ in total_kinds})
    print("recall by kind (folds): " + ", ".join(f"{k} {total_kinds[(k, 'found')]}/{total_kinds[(k, 'events')]}" for k in kinds))
    print("\npoints the folds chose:")
    for point, n in chosen.most_common():
        print(f"  {n:2d}  " + ", ".join(f"{k}={v}" for k, v in zip(keys, point)))


if __name__ == "__main__":
    main()
