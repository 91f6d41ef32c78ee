#!/usr/bin/env python3
"""Eddy against its peers on the reference workload, measured in one invocation.

Runs `eddy bench train` (ae, moco, both) and `eddy bench score`, then the numpy peer (and the
PyTorch peer if torch is importable), alternating, for --rounds rounds in fresh processes. Prints
the median of each metric, its spread (max - min) / median, and Eddy's ratio to each peer, and
writes everything to out/bench-D<dim>.json. Absolute figures drift on a shared machine: read
the ratios.

Usage: .venv/bin/python scripts/bench-compare.py [--dim 32] [--rounds 3] [--seconds 1.5]
       [--peers ../shared/bench/peers] [--eddy .build/release/eddy]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS = ["ae_train", "moco_train", "both_train", "score_b1", "score_b256"]


def run_eddy(eddy, dim, seconds):
    out = {}
    for model in ("ae", "moco", "both"):
        r = json.loads(subprocess.check_output(
            [eddy, "bench", "train", "--model", model, "--dim", str(dim), "--seconds", str(seconds), "--json"]))
        out[f"{model}_train"] = r["samples_per_second"]
        out[f"{model}_sgemm_fraction"] = r["fraction_of_sgemm_limit"]
        out[f"{model}_final_loss"] = r["final_loss"]
        for key in ("ae_loss_first", "ae_loss_last", "moco_loss_first", "moco_loss_last"):
            if key in r and model != "both":
                out[key] = r[key]
    r = json.loads(subprocess.check_output(
        [eddy, "bench", "score", "--dim", str(dim), "--seconds", str(seconds), "--json"]))
    out["score_b1"], out["score_b256"] = r["score_b1"], r["score_b256"]
    return out


def run_peer(python, script, dim, seconds):
    line = subprocess.check_output(
        [python, script, "--D", str(dim), "--threads", "1", "--seconds", str(seconds)],
        cwd=script.parent, text=True)
    result = next(l for l in line.splitlines() if l.startswith("RESULT "))
    fields = {}
    for part in result.split()[1:]:
        k, _, v = part.partition("=")
        try:
            fields[k] = float(v)
        except ValueError:
            fields[k] = v
    return fields


def torch_available(python):
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def summarise(runs, key):
    values = [float(r[key]) for r in runs if isinstance(r.get(key), (int, float))]
    if not values:
        return None, None
    median = statistics.median(values)
    return median, (max(values) - min(values)) / median if median else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--peers", default=str(ROOT.parent / "shared" / "bench" / "peers"))
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    args = ap.parse_args()

    peers_dir = Path(args.peers)
    peers = {"numpy": peers_dir / "peer_numpy.py"}
    if torch_available(sys.executable):
        peers["torch"] = peers_dir / "peer_torch.py"
    missing = [str(p) for p in peers.values() if not p.exists()]
    if missing:
        sys.exit(f"bench-compare: peer scripts not found: {missing} (pass --peers DIR)")

    runs = {"eddy": [], **{name: [] for name in peers}}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}: eddy", end="", flush=True)
        runs["eddy"].append(run_eddy(args.eddy, args.dim, args.seconds))
        for name, script in peers.items():
            print(f", {name}", end="", flush=True)
            runs[name].append(run_peer(sys.executable, script, args.dim, args.seconds))
        print()

    print(f"\nD={args.dim}, one BLAS thread, median of {args.rounds} (spread = (max-min)/median), samples/s\n")
    header = f"| metric | eddy | " + " | ".join(f"{n} | eddy/{n}" for n in peers) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(peers)))
    summary = {"dim": args.dim, "rounds": args.rounds, "metrics": {}}
    for metric in METRICS:
        e, es = summarise(runs["eddy"], metric)
        row = f"| {metric} | {e:,.0f} ({es:.0%}) |"
        entry = {"eddy": e, "eddy_spread": es}
        for name in peers:
            p, ps = summarise(runs[name], metric)
            ratio = e / p if p else float("nan")
            row += f" {p:,.0f} ({ps:.0%}) | {ratio:.2f}x |"
            entry[name], entry[f"{name}_spread"], entry[f"ratio_{name}"] = p, ps, ratio
        print(row)
        summary["metrics"][metric] = entry
    print()
    for model in ("ae", "moco", "both"):
        f, _ = summarise(runs["eddy"], f"{model}_sgemm_fraction")
        print(f"eddy {model}: {f:.0%} of the rate its step's sgemm calls alone allow")
        summary[f"{model}_fraction_of_sgemm_limit"] = f
    for key in ("ae_loss_first", "ae_loss_last", "moco_loss_first", "moco_loss_last"):
        e, _ = summarise(runs["eddy"], key)
        n, _ = summarise(runs["numpy"], key)
        print(f"learning check {key}: eddy {e:.4f}, numpy {n:.4f}")
        summary[key] = {"eddy": e, "numpy": n}
    summary["runs"] = runs
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    path = out / f"bench-D{args.dim}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
