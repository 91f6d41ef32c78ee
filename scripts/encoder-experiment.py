#!/usr/bin/env python3
"""Is the MLP the limit? An offline replica of the daemon's MoCo (PyTorch, CPU) with the daemon's
MLP encoder or a dilated 1-D convolutional one, trained the probe's way on the probe's series sets
and scored by the probe's own measures (scripts/probe.py: kNN, linear probe, 5-label heads against
the raw input and a random encoder of the same shape).

Not the daemon: the replay buffer is a uniform draw from TRAIN, and the augmentations are ported
from `AugmentationConfiguration` (crop-and-resize and time warp shared by the channels, jitter,
value masking). It answers one question before anyone builds a convolutional encoder in Swift.

    python scripts/encoder-experiment.py [--sets GunPoint,...,digits] [--seeds 0,1] [--steps 750]
        [--encoders mlp,conv] [--augmentations values,time] [--reconstruction 30] [--no-infonce]
        [--neighbour W] [--variant bnenc,bnhead,skip,cov,sym,pred] [--json out.json]

`--reconstruction L` adds the daemon's `moco_reconstruction` term: a decoder (64 → 128 → D) rebuilds
each clean sample from its query view's representation, loss = InfoNCE + L · MSE; `--no-infonce`
leaves the reconstruction alone (a denoising autoencoder with the same encoder). `--neighbour W`
mixes in NNCLR's positive (the queue's nearest key of another sample): loss = (1 − W) · InfoNCE +
W · InfoNCE with that neighbour as the positive. `--variant bnhead` puts batch normalisation in the
projection head's hidden layer, `bnenc` after each encoder layer (both: the daemon's
`moco_batch_norm`); the representation is read with the running statistics. `skip` adds a linear
map of the input (no bias) to the MLP's output; `cov` adds VICReg's covariance term (squared
off-diagonal covariances of the batch's representations, over the width) to the loss. `sym` makes
the loss MoCo v3's symmetrised one (each view the query once); `pred` puts MoCo v3's predictor
(32 → 64 → 32, batch-normalised) after the query's projection head.

Needs torch (not a dependency of the project: `pip install torch` into a venv of its own, with
numpy and pyzmq for probe.py's imports).
"""
import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("probe", ROOT / "scripts" / "probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

SERIES = ["GunPoint", "BasicMotions", "ArrowHead", "UnitTest", "Covid3Month_disc"]
AUGMENTATIONS = {"values": dict(crop=None, warp=0.0), "time": dict(crop=0.5, warp=0.3)}


def augment(x, channels, crop, warp, rng):
    """One view of a batch (n, channels·length): along time alike in every channel, then jitter 0.05
    and masking 0.1, as the daemon's augmentation."""
    n, d = x.shape
    length = d // channels
    out = np.empty_like(x)
    last = length - 1
    t = np.arange(length, dtype=np.float64)
    for r in range(n):
        start, step = 0, 1.0
        if crop is not None:
            kept = max(2, min(length, int(round(rng.uniform(crop, 1) * length))))
            start = rng.integers(0, length - kept + 1)
            step = (kept - 1) / last
        if warp > 0:
            durations = np.exp(warp * rng.standard_normal(4))
            durations *= last / durations.sum()
            edges = np.concatenate([[0], np.cumsum(durations)])
            u = np.interp(t, edges, np.linspace(0, last, 5))
        else:
            u = t
        pos = np.minimum(start + u * step, last)
        series = x[r].reshape(channels, length)
        out[r] = np.stack([np.interp(pos, t, c) for c in series]).reshape(-1)
    out += 0.05 * rng.standard_normal(out.shape)
    out[rng.uniform(size=out.shape) < 0.1] = 0
    return out.astype(np.float32)


class MLP(nn.Module):
    def __init__(self, d, channels):
        super().__init__()
        if "bnenc" in VARIANT:
            self.net = nn.Sequential(nn.Linear(d, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64), nn.BatchNorm1d(64), nn.ReLU())
        else:
            self.net = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        # "skip": a linear path from the input added to the representation (a residual encoder).
        self.skip = nn.Linear(d, 64, bias=False) if "skip" in VARIANT else None

    def forward(self, x):
        return self.net(x) + (self.skip(x) if self.skip is not None else 0)


class Conv(nn.Module):
    """Three dilated convolutions (kernel 7, dilations 1, 2, 4, 64 channels), global average pool."""

    def __init__(self, d, channels):
        super().__init__()
        self.channels = channels
        layers, width = [], channels
        for dilation in (1, 2, 4):
            layers += [nn.Conv1d(width, 64, 7, dilation=dilation, padding=3 * dilation), nn.ReLU()]
            width = 64
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.view(x.shape[0], self.channels, -1)).mean(dim=2)


# Batch normalisation: "bnhead" in the projection head's hidden layer, "bnenc" after each encoder layer.
VARIANT = set()


def head():
    if "bnhead" in VARIANT:
        return nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))


def train(encoder_type, x, channels, augmentation, steps, seed, reconstruction=0.0, infonce=True, neighbour=0.0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    q_enc, q_head = encoder_type(d, channels), head()
    k_enc, k_head = encoder_type(d, channels), head()
    for k, q in ((k_enc, q_enc), (k_head, q_head)):
        k.load_state_dict(q.state_dict())
        for p in k.parameters():
            p.requires_grad_(False)
    params = list(q_enc.parameters()) + list(q_head.parameters())
    # "pred": MoCo v3's predictor on the query side (not in the key encoder, not read by the probe).
    predictor = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)) if "pred" in VARIANT else None
    params_extra = list(predictor.parameters()) if predictor is not None else []
    # Drawn only with the term, so that runs without it are those of the script before it.
    decoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, d)) if reconstruction > 0 else None
    optimiser = torch.optim.Adam(params + params_extra + (list(decoder.parameters()) if decoder else []), lr=3e-3)
    queue = nn.functional.normalize(torch.randn(4096, 32), dim=1)
    queue_ids = torch.full((4096,), -1, dtype=torch.long)
    pointer, t, m = 0, 0.2, 0.99
    for _ in range(steps):
        idx = rng.integers(0, len(x), 64)
        xq = torch.from_numpy(augment(x[idx], channels, rng=rng, **augmentation))
        xk = torch.from_numpy(augment(x[idx], channels, rng=rng, **augmentation))
        representation = q_enc(xq)
        project = (lambda h: predictor(q_head(h))) if predictor is not None else q_head
        q = nn.functional.normalize(project(representation), dim=1)
        with torch.no_grad():
            k = nn.functional.normalize(k_head(k_enc(xk)), dim=1)
        ids = torch.from_numpy(idx)

        def infonce_loss(q, k):
            negatives = (q @ queue.T).masked_fill(queue_ids[None, :] == ids[:, None], float("-inf"))
            logits = torch.cat([(q * k).sum(1, keepdim=True), negatives], dim=1) / t
            return nn.functional.cross_entropy(logits, torch.zeros(64, dtype=torch.long)), negatives

        loss, negatives = infonce_loss(q, k)
        if "sym" in VARIANT:
            # "sym": MoCo v3's symmetrised loss, each view the query once (the key view's keys enqueued).
            q2 = nn.functional.normalize(project(q_enc(xk)), dim=1)
            with torch.no_grad():
                k2 = nn.functional.normalize(k_head(k_enc(xq)), dim=1)
            loss = (loss + infonce_loss(q2, k2)[0]) / 2
        loss = loss * (1.0 if infonce else 0.0)
        if neighbour > 0 and bool((queue_ids >= 0).all()):
            # NNCLR's positive: the queue's nearest key of another sample to this sample's key; every
            # copy of that sample in the queue is the positive's, not a negative.
            with torch.no_grad():
                similarity = (k @ queue.T).masked_fill(queue_ids[None, :] == ids[:, None], float("-inf"))
                nearest = similarity.argmax(dim=1)
                neighbour_ids = queue_ids[nearest]
            positives = (q * queue[nearest]).sum(1, keepdim=True)
            others = negatives.masked_fill(queue_ids[None, :] == neighbour_ids[:, None], float("-inf"))
            nn_logits = torch.cat([positives, others], dim=1) / t
            loss = (1 - neighbour) * loss + neighbour * nn.functional.cross_entropy(nn_logits, torch.zeros(64, dtype=torch.long))
        if "cov" in VARIANT:
            # "cov": VICReg's covariance term on the representation (off-diagonal covariances squared, / width).
            z = representation - representation.mean(0)
            cov = (z.T @ z) / (len(z) - 1)
            loss = loss + ((cov ** 2).sum() - (cov.diagonal() ** 2).sum()) / cov.shape[0]
        if reconstruction > 0:
            loss = loss + reconstruction * ((decoder(representation) - torch.from_numpy(x[idx])) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            for kp, qp in zip(list(k_enc.parameters()) + list(k_head.parameters()), params):
                kp.mul_(m).add_(qp, alpha=1 - m)
            for kb, qb in zip(list(k_enc.buffers()) + list(k_head.buffers()), list(q_enc.buffers()) + list(q_head.buffers())):
                kb.copy_(qb)
            queue[pointer:pointer + 64] = k
            queue_ids[pointer:pointer + 64] = ids
            pointer = (pointer + 64) % 4096
    return q_enc


def run(name, encoder_name, augmentation_name, seed, steps, reconstruction=0.0, infonce=True, neighbour=0.0):
    xtr, ytr, xte, yte, channels = probe.load(name)
    mean, std = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    ntr, nte = ((xtr - mean) / std).astype(np.float32), ((xte - mean) / std).astype(np.float32)
    encoder_type = {"mlp": MLP, "conv": Conv}[encoder_name]
    trained = train(encoder_type, ntr, max(channels, 1), AUGMENTATIONS[augmentation_name], steps, seed, reconstruction, infonce, neighbour)
    torch.manual_seed(1000 + seed)
    untrained = encoder_type(ntr.shape[1], max(channels, 1))
    trained.eval(); untrained.eval()
    row = {"set": name, "seed": seed, "encoder": encoder_name, "augmentation": augmentation_name}
    with torch.no_grad():
        features = {"raw": (ntr, nte),
                    "random": (untrained(torch.from_numpy(ntr)).numpy(), untrained(torch.from_numpy(nte)).numpy()),
                    "moco": (trained(torch.from_numpy(ntr)).numpy(), trained(torch.from_numpy(nte)).numpy())}
    for kind, (ftr, fte) in features.items():
        ftr, fte = ftr.astype(np.float64), fte.astype(np.float64)
        row[f"knn_{kind}"] = round(probe.knn_accuracy(ftr, ytr, fte, yte), 4)
        row[f"linear_{kind}"] = round(probe.linear_accuracy(ftr, ytr, fte, yte), 4)
        if kind != "random":
            row[f"few_{kind}"] = round(probe.few_label_accuracy(ftr, ytr, fte, yte), 4)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SERIES))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=750)
    ap.add_argument("--encoders", default="mlp,conv")
    ap.add_argument("--augmentations", default=",".join(AUGMENTATIONS))
    ap.add_argument("--reconstruction", type=float, default=0.0)
    ap.add_argument("--no-infonce", action="store_true")
    ap.add_argument("--neighbour", type=float, default=0.0, help="weight of NNCLR's nearest-neighbour positive")
    ap.add_argument("--json")
    ap.add_argument("--variant", default="")
    args = ap.parse_args()
    VARIANT.update(v for v in args.variant.split(",") if v)
    torch.set_num_threads(1)
    rows = []
    for encoder in args.encoders.split(","):
        for augmentation in args.augmentations.split(","):
            for name in args.sets.split(","):
                for seed in [int(s) for s in args.seeds.split(",")]:
                    r = run(name, encoder, augmentation, seed, args.steps, args.reconstruction, not args.no_infonce, args.neighbour)
                    rows.append(r)
                    print(f"{encoder:4} {augmentation:6} {name:16} {seed}  kNN {r['knn_raw']:.3f} {r['knn_random']:.3f} "
                          f"{r['knn_moco']:.3f}  linear {r['linear_raw']:.3f} {r['linear_random']:.3f} {r['linear_moco']:.3f}  "
                          f"5-label {r['few_raw']:.3f} {r['few_moco']:.3f}", flush=True)
            part = [r for r in rows if r["encoder"] == encoder and r["augmentation"] == augmentation]
            sets, mean, wins, few = probe.summary(part)
            print(f"== {encoder} {augmentation}: wins kNN {wins['knn']}/{len(sets)} linear {wins['linear']}/{len(sets)} "
                  f"5-label {few}/{len(sets)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
