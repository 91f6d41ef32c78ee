#!/usr/bin/env python3
"""A seeded, labelled synthetic time-series corpus for `eddy eval`, generated with GutenTAG.

Usage: python scripts/make-corpus.py --out DIR --seed N [--kind univariate|multivariate] [--series K] [--lengths MIN,MAX]
       (pip install -r scripts/requirements-corpus.txt; K defaults to 30 univariate, 24 multivariate)

Layout written (DIR must be empty or absent; the same seed gives the same bytes):
  DIR/<family>/<family>-NN.csv  header `timestamp,value-0,...,value-(c-1),is_anomaly`: one row per step,
                                timestamp = row index, values plain decimals (6 places), is_anomaly 0 or 1
  DIR/MANIFEST.json             per file: family, channels, length, each channel's GutenTAG base oscillation,
                                and its anomalies: kind, start row, length (rows start..start+length-1 are
                                labelled 1), channels, GutenTAG parameters, effect (RMS change / channel std)
  DIR/README.md                 how it was generated: command, seed, versions, licence

Families are kinds of base signal, so leaving one family out means testing on a signal never seen:
  sine             sine and cosine waves
  square-sawtooth  square and sawtooth waves
  ecg              simulated electrocardiogram (neurokit2, "simple" method)
  cbf              cylinder-bell-funnel: randomly spaced bell, funnel and cylinder shapes
  random           random walk, and random mode jump (the only base mode-correlation applies to)
Series are dealt to the families in turn; a multivariate series (2 to 8 channels) mixes the bases of its family.
Each series has 1 to 3 non-overlapping anomalies, none in its first 20%, each of one kind and on one channel or
a subset. Kinds are balanced: each anomaly takes the least-used kind that GutenTAG's compatibility table allows on
the series' bases. Frequency, pattern and pattern-shift start on a period boundary and stay on one channel. Every
anomaly is compared with a clean copy of its series (same seed, no anomalies); a series where one changes too
little is drawn again, so a window is never labelled where GutenTAG changed nothing.
"""
import argparse
import json
import os
import sys
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # GutenTAG's progress bars
import numpy as np  # noqa: E402
from gutenTAG import GutenTAG  # noqa: E402
from gutenTAG.utils.compatibility import Compatibility  # noqa: E402

FAMILIES = {"sine": ["sine", "cosine"], "square-sawtooth": ["square", "sawtooth"], "ecg": ["ecg"],
            "cbf": ["cylinder-bell-funnel"], "random": ["random-walk", "random-mode-jump"]}
KINDS = ["amplitude", "extremum", "frequency", "mean", "pattern", "pattern-shift", "platform", "trend",
         "variance", "mode-correlation"]
PHASED = {"frequency", "pattern", "pattern-shift"}  # start on a period boundary, one channel
WAVES, PERIODIC = {"sine", "cosine", "square", "sawtooth"}, {"sine", "cosine", "square", "sawtooth", "ecg"}
ECG_SCALE = 5.0     # neurokit's ECG spans about [-3, 7] x amplitude: its scale is ~5 x amplitude
MIN_EFFECT = 0.1    # an anomaly must change its window by at least this (RMS / channel std)
GAP = 20            # rows between anomalies and after the last


def rnd(x, digits=4):
    return round(float(x), digits)


def draw_period(rng, base):
    lo, hi = {"ecg": (40, 200), "random-mode-jump": (20, 150), "cylinder-bell-funnel": (20, 200)}.get(base, (20, 300))
    return float(rng.uniform(lo, hi))


def make_base(rng, base, n, period, rmj):
    """One channel's GutenTAG base oscillation, its scale (what anomalies are sized by) and its period in rows
    (cbf: the mean pattern length; random walk: None)."""
    amp, noise = rnd(rng.uniform(0.5, 5), 3), rng.uniform(0, 0.1)  # noise std as a fraction of the scale
    bo = {"kind": base, "offset": rnd(rng.uniform(-10, 10), 3)}
    if base in WAVES:
        bo.update(frequency=rnd(100 / period, 5), amplitude=amp, variance=rnd(noise))
        if base == "square":
            bo["duty"] = rnd(rng.uniform(0.3, 0.7), 3)
        if base == "sawtooth":
            bo["width"] = float(rng.choice([0.5, 1.0]))
        # GutenTAG samples t = linspace(0, n/100, n): a period is slightly shorter than 100/frequency rows
        return bo, amp, 100 / bo["frequency"] * (n - 1) / n
    if base == "ecg":
        amp = rnd(amp / ECG_SCALE, 3)
        bo.update(frequency=rnd(100 / period, 5), amplitude=amp, variance=rnd(noise * ECG_SCALE))
        return bo, amp * ECG_SCALE, 100 / bo["frequency"]
    if base == "cylinder-bell-funnel":
        # Its noise std is `variance`, but GutenTAG adds back variance x amplitude in a rewritten window:
        # an amplitude near 1 keeps the two alike (the patterns' amplitudes vary by variance-amplitude).
        amp = rnd(rng.uniform(0.8, 1.25), 3)
        bo.update(amplitude=amp, variance=rnd(noise * amp), **{"avg-pattern-length": int(period),
                  "variance-pattern-length": rnd(period * rng.uniform(0.05, 0.15), 2),
                  "variance-amplitude": rnd(amp * rng.uniform(0.1, 0.3), 3)})
        return bo, amp, bo["avg-pattern-length"]  # not a period, but the scale a pattern change needs
    if base == "random-walk":
        bo.update(amplitude=amp, variance=rnd(noise), smoothing=rnd(rng.uniform(0.005, 0.02)))
        return bo, amp, None
    # random-mode-jump: steps of +-(channel-diff * channel + channel-offset), `frequency` = number of steps;
    # channels sharing random-seed jump together. It has no amplitude: noise std = variance.
    bo.update(frequency=rmj["steps"], variance=rnd(noise * rmj["level"]), **{"channel-offset": rmj["level"],
              "channel-diff": rmj["diff"], "random-seed": rmj["seed"]})
    return bo, rmj["level"], n // rmj["steps"]


def kind_params(rng, kind, base, bo, scale, period, length):
    sign = float(rng.choice([-1.0, 1.0]))
    if kind == "amplitude":
        return {"amplitude_factor": rnd(rng.uniform(0.1, 0.4) if sign < 0 else rng.uniform(2, 4), 3)}
    if kind == "extremum":
        local = bool(rng.random() < 1 / 3)
        return {"min": bool(sign < 0), "local": local, **({"context_window": 100} if local else {})}
    if kind == "frequency":
        return {"frequency_factor": rnd(rng.uniform(0.3, 0.6) if sign < 0 else rng.uniform(1.6, 3), 3)}
    if kind == "mean":
        return {"offset": rnd(sign * rng.uniform(0.5, 1.5) * scale)}
    if kind == "pattern":
        if base == "square":
            return {"square_duty": rnd(rng.uniform(0.05, 0.15) if sign < 0 else rng.uniform(0.85, 0.95), 3)}
        if base == "sawtooth":  # 0 would be ignored (GutenTAG's `width or self.width`): 0.05 for a falling tooth
            return {"sawtooth_width": float(rng.choice([w for w in (0.05, 0.5, 1.0) if w != bo["width"]]))}
        if base == "cylinder-bell-funnel":
            return {"cbf_pattern_factor": rnd(rng.uniform(4, 8), 2)}
        if base in ("sine", "cosine"):
            return {"sinusoid_k": rnd(rng.uniform(5, 20), 2)}
        return {}  # ecg: the window is reversed in time
    if kind == "pattern-shift":
        window = int(np.clip(period * rng.uniform(0.15, 0.35), 5, length // 3))
        return {"shift_by": int(sign * rng.integers(max(1, window // 2), window + 1)), "transition_window": window}
    if kind == "platform":  # GutenTAG adds the offset and the noise afterwards
        return {"value": rnd(rng.uniform(-0.5, 0.5) * scale)}
    if kind == "trend":  # a ramp; the level it reaches persists after the window
        return {"oscillation": {"kind": "polynomial", "polynomial": [0, rnd(sign * rng.uniform(0.5, 2) * scale / length, 6)]}}
    if kind == "variance":  # GutenTAG takes this as the absolute noise std in the window
        return {"variance": rnd(rng.uniform(0.2, 0.5) * scale)}
    return {}  # mode-correlation: the window's sign is flipped


def plan_series(rng, name, family, j, multi, counts, lengths=None):
    """A GutenTAG time-series config and its manifest entry. `j` = index of the series in its family;
    `lengths` = (shortest, longest) rows, drawn uniformly in tens, instead of the default mix."""
    if lengths:
        n = int(rng.integers(lengths[0] // 10, lengths[1] // 10 + 1)) * 10
    else:
        n = int(rng.integers(120, 181)) * 10 if rng.random() < 0.2 else int(rng.integers(200, 801)) * 10
    c = int(rng.integers(2, 9)) if multi else 1
    if family == "random" and multi:  # at least two mode-jump channels, so mode-correlation has a partner
        n_rmj = int(rng.integers(2, max(2, c - 1) + 1))  # and a random-walk channel from 3 channels
        bases = ["random-mode-jump"] * n_rmj + ["random-walk"] * (c - n_rmj)
    elif multi:
        bases = [str(rng.choice(FAMILIES[family])) for _ in range(c)]
    else:
        bases = [FAMILIES[family][j % len(FAMILIES[family])]]
    period = draw_period(rng, bases[0])
    rmj = {"steps": int(n // draw_period(rng, "random-mode-jump")), "level": rnd(rng.uniform(0.5, 5), 3),
           "diff": rnd(rng.uniform(0, 1), 3) if multi else 0.0, "seed": int(rng.integers(1, 2**31))}
    channels = [make_base(rng, b, n, period if rng.random() < 0.5 else draw_period(rng, b), rmj) for b in bases]
    support = [{k for k in KINDS if Compatibility.check(k, b)} for b in bases]
    if multi and bases.count("random-mode-jump") < 2:
        support = [s - {"mode-correlation"} for s in support]

    k = int(rng.integers(1, 4))
    lo, slot = int(np.ceil(0.2 * n)), (n - int(np.ceil(0.2 * n)) - GAP) // k
    anomalies, gt_anomalies = [], []
    for s in range(k):
        candidates = sorted(set().union(*support))
        fewest = min(counts[kind] for kind in candidates)
        kind = str(rng.choice([kind for kind in candidates if counts[kind] == fewest]))
        able = [ch for ch in range(c) if kind in support[ch]]
        if not multi:
            chans = [0]
        elif kind in PHASED:
            chans = [int(rng.choice(able))]
        elif kind == "mode-correlation":  # a strict subset of the channels that jump together
            chans = sorted(int(x) for x in rng.choice(able, int(rng.integers(1, len(able))), replace=False))
        else:
            size = 1 if rng.random() < 0.5 else int(rng.integers(2, max(2, c // 2) + 1))
            chans = sorted(int(x) for x in rng.choice(able, min(size, len(able)), replace=False))
        bo, scale, p = channels[chans[0]]
        slot_lo, room = lo + s * slot, slot - GAP
        if kind == "extremum":
            length = 1
        elif kind == "mode-correlation" and multi:  # whole steps: only the correlation with the other channels breaks
            length = int(round(p * rng.integers(1, 3)))
        elif kind in PHASED or (kind == "amplitude" and bases[chans[0]] in PERIODIC):  # a period at least
            length = int(max(rng.uniform(10, 200), max(channels[ch][2] for ch in chans), 40))
        else:  # a trend shorter than 50 rows is a step
            length = int(rng.uniform(50 if kind == "trend" else 10, 200))
        aligned = (kind in PHASED and bases[chans[0]] in PERIODIC) or (kind == "mode-correlation" and multi)
        if aligned:  # leave a period of room to move the start to the next period boundary
            length = min(length, int(room - p))
        length = min(length, room) // 5 * 5 if kind == "trend" else min(length, room)  # GutenTAG's trend needs 5 | length
        if length < (1 if kind == "extremum" else 10):
            raise ValueError(f"no room for a {kind} anomaly")
        start = int(rng.integers(slot_lo, slot_lo + room - length - (int(p) if aligned else 0) + 1))
        if aligned:
            start = int(round(np.ceil(start / p) * p))
        elif kind == "mode-correlation":  # one channel: the flip must fall off the step grid to show at all
            start = int(start // p * p + p * rng.uniform(0.25, 0.75))
            start = max(slot_lo, min(start, slot_lo + room - length))
        params = kind_params(rng, kind, bases[chans[0]], bo, scale, p, length)
        anomalies.append({"kind": kind, "start": start, "length": length, "channels": chans, "params": params})
        for ch in chans:
            gt_anomalies.append({"exact-position": start, "length": length, "channel": ch,
                                 "kinds": [{"kind": kind, **params}]})
    config = {"name": name, "length": n, "base-oscillations": [bo for bo, _, _ in channels], "anomalies": gt_anomalies}
    entry = {"file": f"{family}/{name}.csv", "family": family, "channels": c, "length": n,
             "base_oscillations": config["base-oscillations"], "anomalies": anomalies}
    return config, entry


def generate(config, seed):
    ts = GutenTAG.from_dict({"timeseries": [config]}, seed=seed).generate(return_timeseries=True)[0].timeseries
    return ts[[f"value-{i}" for i in range(ts.shape[1] - 1)]].to_numpy(), ts["is_anomaly"].to_numpy()


def check(config, entry, seed):
    """The series and its labels; ValueError if an anomaly changed its window too little, or labels disagree."""
    values, labels = generate(config, seed)
    clean, _ = generate({**config, "anomalies": []}, seed)
    expected = np.zeros(len(labels), dtype=int)
    d = values - clean
    for a in entry["anomalies"]:
        expected[a["start"]:a["start"] + a["length"]] = 1
        # measured from the row before: a trend earlier in the series leaves its level behind
        effects = [np.sqrt(np.mean((d[a["start"]:a["start"] + a["length"], ch] - d[a["start"] - 1, ch]) ** 2))
                   / max(np.std(clean[:, ch]), 1e-9) for ch in a["channels"]]
        a["effect"] = rnd(min(effects), 3)
        if a["effect"] < MIN_EFFECT:
            raise ValueError(f"the {a['kind']} anomaly at row {a['start']} changed its window too little")
    if not np.isfinite(values).all() or not np.array_equal(labels, expected):
        raise ValueError("values not finite, or labels not where they were placed")
    return values, labels


def write_csv(path, values, labels):
    def fmt(v):
        return f"{v:.6f}".replace("-0.000000", "0.000000")
    lines = ["timestamp," + ",".join(f"value-{i}" for i in range(values.shape[1])) + ",is_anomaly"]
    lines += [f"{t}," + ",".join(map(fmt, row)) + f",{int(y)}" for t, (row, y) in enumerate(zip(values, labels))]
    path.write_text("\n".join(lines) + "\n")


def readme(args, counts, entries):
    meta = metadata.metadata("timeeval-gutentag")
    version, licence = meta["Version"], meta.get("License-Expression") or meta.get("License") or "(not stated)"
    fams = "\n".join(f"- `{f}`: {', '.join(b)} ({sum(e['family'] == f for e in entries)} files)" for f, b in FAMILIES.items())
    kinds = "\n".join(f"- {k}: {counts[k]}" for k in KINDS)
    return f"""# Synthetic labelled corpus ({args.kind}, seed {args.seed})

Generated by the Eddy repository's `scripts/make-corpus.py` (its docstring describes the layout):

    python scripts/make-corpus.py --out OUT --seed {args.seed} --kind {args.kind} --series {args.series}{f" --lengths {args.lengths}" if args.lengths else ""}

where OUT is this directory (requirements: `scripts/requirements-corpus.txt`). The same command gives the
same bytes with the same package versions:
GutenTAG (PyPI `timeeval-gutentag`) {version}, numpy {np.__version__}, neurokit2 {metadata.version("neurokit2")}.
GutenTAG is licensed {licence} (licence expression in its installed package metadata); it is at
https://github.com/TimeEval/gutentag.

Each `<family>/<name>.csv` has `timestamp,value-0..value-(c-1),is_anomaly`; `MANIFEST.json` lists for each file
its base oscillations and anomalies (kind, start row, length, channels, parameters, effect = RMS change over
the window / the channel's standard deviation). In GutenTAG a trend anomaly's final level persists after its
window (only the ramp is labelled), and a univariate mode-correlation anomaly is a sign flip of a mode-jump
signal placed off the step grid.

Families ({len(entries)} files):
{fams}

Anomalies by kind:
{kinds}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--kind", choices=["univariate", "multivariate"], default="univariate")
    ap.add_argument("--series", type=int, help="number of series (default 30 univariate, 24 multivariate)")
    ap.add_argument("--lengths", help="MIN,MAX rows per series, drawn uniformly (default: a fifth 1,200 to "
                    "1,800, the rest 2,000 to 8,000); e.g. 800,2500 for a corpus of short streams")
    args = ap.parse_args()
    multi = args.kind == "multivariate"
    lengths = tuple(int(x) for x in args.lengths.split(",")) if args.lengths else None
    if lengths and (len(lengths) != 2 or not 500 <= lengths[0] <= lengths[1]):
        sys.exit("--lengths takes MIN,MAX with 500 <= MIN <= MAX")
    args.series = args.series or (24 if multi else 30)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} is not empty")
    rng = np.random.default_rng([args.seed, int(multi)])
    counts = {k: 0 for k in KINDS}
    entries = []
    for i in range(args.series):
        family = list(FAMILIES)[i % len(FAMILIES)]
        name = f"{family}-{i:02d}"
        for _ in range(20):
            try:  # ValueError: no room for an anomaly, one without effect, or a config GutenTAG refused
                config, entry = plan_series(rng, name, family, i // len(FAMILIES), multi, counts, lengths)
                values, labels = check(config, entry, args.seed)
                break
            except ValueError as e:
                print(f"{name}: {e}; drawing the series again", file=sys.stderr)
        else:
            sys.exit(f"{name}: no valid series in 20 attempts")
        (args.out / family).mkdir(parents=True, exist_ok=True)
        write_csv(args.out / entry["file"], values, labels)
        for a in entry["anomalies"]:
            counts[a["kind"]] += 1
        entries.append(entry)
    manifest = {"generator": "scripts/make-corpus.py", "seed": args.seed, "kind": args.kind, "lengths": args.lengths,
                "gutentag_version": metadata.version("timeeval-gutentag"), "families": FAMILIES,
                "anomaly_counts": counts, "files": entries}
    (args.out / "README.md").write_text(readme(args, counts, entries))
    # Last: `make corpus` takes a directory with its MANIFEST.json as complete.
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(entries)} files in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
