#!/usr/bin/env python3
"""Leave-one-family-out choice of a setting, over labelled corpora and seeds, with `eddy eval`.

Usage:
  python scripts/cross-validate.py --corpus nab=../shared/data/nab --corpus gt=out/corpus/univariate-10 \\
      --candidate default= --candidate warm250="warmup_samples = 250" [--seeds 0,1,2] [--metric f1] \\
      [--eddy .build/release/eddy] [--json out/cv.json] [--reuse out/earlier-cv.json]

Each candidate is a few lines of `[stream]` configuration (`key = value`, `;` between lines); the
empty candidate is the embedded defaults. Every candidate runs on every corpus with every seed
(`eddy eval --json`), and for each family F of each corpus the candidate with the best metric on
the *other* families of that corpus (pooled counts, mean over seeds) is chosen and reported on F:
the figure a user with signals like F's, unseen while choosing, would get. A candidate that wins
on the files at hand but not when a family is held out shows up as a fold it loses.

Metrics (from the pooled event counts at the daemon's alert threshold, or the ranking):
  f1      event F1           auc_pr  average precision of the published score
  nab     NAB standard score at the threshold the other families chose (NAB-layout corpora only)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def run_eval(eddy, corpus, config_text, seed):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write("[stream]\n" + "\n".join(line.strip() for line in config_text.split(";") if line.strip()))
        f.write(f"\nseed = {seed}\n")
        path = f.name
    try:
        out = subprocess.run([eddy, "eval", corpus, "--json", "--config", path],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    return json.loads(out)


def pooled(families, names, metric):
    """The metric over the families `names` of one report, counts pooled."""
    chosen = [f for f in families if f["family"] in names]
    found = sum(f["found"] for f in chosen)
    missed = sum(f["missed"] for f in chosen)
    false_alarms = sum(f["false_alarms"] for f in chosen)
    if metric == "f1":
        # As `eddy eval`: undefined without events, else 2·found / (2·found + false alarms + missed).
        return 2 * found / (2 * found + false_alarms + missed) if found + missed else None
    if metric == "auc_pr":
        # Weighted by rows: the families' own figures are all the report has.
        values = [(f["auc_pr"]["score"], f["rows"]) for f in chosen if f["auc_pr"]["score"] is not None]
        return sum(v * r for v, r in values) / sum(r for _, r in values) if values else None
    if metric == "nab":
        values = [f["nab_standard_own_threshold"] for f in chosen if "nab_standard_own_threshold" in f]
        return sum(values) / len(values) if values else None
    raise SystemExit(f"unknown metric {metric}")


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", action="append", required=True, help="NAME=DIR")
    ap.add_argument("--candidate", action="append", required=True, help='NAME="key = value; key = value"')
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--metric", default="f1", choices=["f1", "auc_pr", "nab"])
    ap.add_argument("--eddy", default=".build/release/eddy")
    ap.add_argument("--json", help="also write every report here")
    ap.add_argument("--reuse", action="append", default=[],
                    help="a --json file of an earlier run: its reports of the same corpus, candidate and seed are taken, not run again")
    args = ap.parse_args()
    corpora = dict(c.split("=", 1) for c in args.corpus)
    candidates = dict(c.split("=", 1) for c in args.candidate)
    seeds = [int(s) for s in args.seeds.split(",")]

    reports = {}  # (corpus, candidate, seed) -> report
    saved = {}
    for path in args.reuse:
        with open(path) as f:
            saved.update(json.load(f)["reports"])
    for cname, cdir in corpora.items():
        for kname, ktext in candidates.items():
            for seed in seeds:
                if f"{cname}/{kname}/{seed}" in saved:
                    reports[(cname, kname, seed)] = saved[f"{cname}/{kname}/{seed}"]
                    continue
                print(f"  {cname} / {kname} / seed {seed}", file=sys.stderr, flush=True)
                reports[(cname, kname, seed)] = run_eval(args.eddy, cdir, ktext, seed)

    rows = []
    for cname in corpora:
        families = [f["family"] for f in reports[(cname, next(iter(candidates)), seeds[0])]["families"]]
        for held in families:
            others = [f for f in families if f != held]

            def score(kname, names):
                return mean([pooled(reports[(cname, kname, s)]["families"], names, args.metric) for s in seeds])

            train = {k: score(k, others) for k in candidates}
            valid = {k: v for k, v in train.items() if v is not None}
            if not valid:
                continue
            chosen = max(valid, key=valid.get)
            test = {k: score(k, [held]) for k in candidates}
            if test[chosen] is None:
                continue
            rows.append({"corpus": cname, "held_out": held, "chosen": chosen, "held_out_figure": test[chosen],
                         "by_candidate": test, "train_by_candidate": train})

    names = list(candidates)
    print(f"\nmetric {args.metric}, mean over seeds {args.seeds}; the chosen candidate is the best on the other families")
    print(f"{'corpus':12} {'held out':22} {'chosen':14} {'held-out':>9}  " + "  ".join(f"{n[:10]:>10}" for n in names))
    for r in rows:
        cells = "  ".join(f"{r['by_candidate'][n]:10.3f}" if r["by_candidate"][n] is not None else f"{'-':>10}" for n in names)
        print(f"{r['corpus']:12} {r['held_out']:22} {r['chosen']:14} {r['held_out_figure']:9.3f}  {cells}")
    for cname in corpora:
        mine = [r for r in rows if r["corpus"] == cname]
        if mine:
            print(f"{cname}: mean held-out figure of the chosen candidates {mean([r['held_out_figure'] for r in mine]):.3f}; "
                  + ", ".join(f"{n} everywhere {mean([r['by_candidate'][n] for r in mine]):.3f}" for n in names))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"folds": rows, "reports": {"/".join(map(str, k)): v for k, v in reports.items()}}, f)


if __name__ == "__main__":
    main()
