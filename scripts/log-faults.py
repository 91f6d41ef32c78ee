#!/usr/bin/env python3
"""Seeded fault injection into a real log, for labelled checks of Eddy's log streams.

    scripts/log-faults.py IN.log OUT_DIR [--seed N] [--kinds unseen,burst,silence,parameter,cascade]

writes OUT_DIR/<name>.log (the log with faults) and OUT_DIR/<name>.labels: one label per line of
the new log, `0` for an untouched line, else the kind of fault the line belongs to. The layout is
what `eddy eval --log OUT_DIR` reads (docs/log-streams.md).

The first --clean fraction of the log (default 0.4) is left alone: a stream learns there. After it,
one fault of each kind, at positions at least --spacing lines apart:

- unseen:    one line of a message the system never logs, behind the header of its neighbour;
- burst:     an existing message that is rare (under 2 % of lines) repeated 30 times over ~60 lines;
- silence:   a regular message (at least 20 times before, gaps' coefficient of variation <= 1)
             deleted for 12 of its usual gaps (at least 120 lines); the lines it is missing from are labelled;
- parameter: one line of a frequent message with a number, that number times 1000;
- cascade:   a crashing component's error cascade: 24 lines of 4 new error messages, interleaved.

A kind the log offers no material for (no regular or parametrised message) is skipped and named on
standard error. Everything is drawn from random.Random(seed): a run is reproducible.
"""
import argparse
import os
import random
import re
import statistics
import sys

NUMBER = re.compile(r"(?<![\w.])(\d{1,9})(?![\w.])")
DIGITS = re.compile(r"\d+")

MESSAGES = [
    "ciod: failed to read message prefix on control stream CioStream socket to 172.16.96.116:33569",
    "kernel: EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2: comm systemd: reading directory lblock 0",
    "java.lang.OutOfMemoryError: GC overhead limit exceeded in thread worker-7",
    "segfault at 0000000000000008 ip 00007f3a2c1d sp 00007ffd9a10 error 4 in libc-2.31.so",
    "disk quota exceeded for volume /data/vol7 by user batch",
    "TLS handshake failed: certificate verify failed: unable to get local issuer certificate",
    "watchdog: BUG: soft lockup - CPU#3 stuck for 22s! [kworker/3:1:1234]",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "connection pool exhausted: 0 of 64 connections available, request queued",
    "checksum mismatch on replica 3 of shard 12, marking replica stale",
]
COMPONENTS = ["storage-agent", "raft-node", "db-pool", "ingest-worker", "cache-tier", "auth-proxy"]
CASCADE = [
    "ERROR {c}: connection to 10.{a}.{b}.{d}:{port} refused",
    "WARN {c}: retrying request {n} of 5 after {ms} ms backoff",
    "ERROR {c}: request {rid} failed: deadline exceeded after {ms} ms",
    "FATAL {c}: too many consecutive failures, shutting down component",
]


def family(line):
    """A line with its digits masked: lines of one message share it (headers aside)."""
    return DIGITS.sub("0", line)


def header(line, keep=3):
    tokens = line.split()
    return " ".join(tokens[: min(keep, max(len(tokens) - 1, 0))])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="unseen,burst,silence,parameter,cascade")
    ap.add_argument("--clean", type=float, default=0.4)
    ap.add_argument("--spacing", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.log, encoding="utf-8", errors="replace") as f:
        lines = [l.rstrip("\r\n") for l in f]
    n = len(lines)
    clean = int(n * args.clean)
    kinds = [k for k in args.kinds.split(",") if k]
    rng.shuffle(kinds)

    # Families seen in the clean part: where each occurs.
    where = {}
    for i, l in enumerate(lines[:clean]):
        where.setdefault(family(l), []).append(i)

    # One slot per kind after the clean part.
    room = n - clean - 150
    slots = max(1, min(len(kinds), room // args.spacing))
    starts = sorted(clean + args.spacing // 4 + k * (room // slots) + rng.randrange(max(1, room // slots - args.spacing // 2)) for k in range(slots))
    edits = []  # (position, kind, payload)
    skipped = []
    for kind, at in zip(kinds, starts):
        if kind == "unseen":
            edits.append((at, "insert", [(header(lines[at]) + " " + rng.choice(MESSAGES)).strip()], kind))
        elif kind == "burst":
            rare = [ix for fam, ix in where.items() if 1 <= len(ix) <= 0.02 * clean]
            if not rare:
                skipped.append(kind)
                continue
            src = lines[rng.choice(rng.choice(rare))]
            copies = [NUMBER.sub(lambda m: str(int(m.group(1)) + rng.randrange(1, 9)), src) for _ in range(30)]
            edits.append((at, "spread", copies, kind))
        elif kind == "silence":
            regular = []
            for fam, ix in where.items():
                if len(ix) < 20:
                    continue
                gaps = [b - a for a, b in zip(ix, ix[1:])]
                mean = statistics.mean(gaps)
                if mean > 0 and statistics.pstdev(gaps) <= mean and mean <= 60:
                    regular.append((fam, mean))
            if not regular:
                skipped.append(kind)
                continue
            fam, mean = rng.choice(regular)
            edits.append((at, "silence", (fam, max(120, int(12 * mean))), kind))
        elif kind == "parameter":
            frequent = [(fam, ix) for fam, ix in where.items() if len(ix) >= 30 and NUMBER.search(lines[ix[0]])]
            if not frequent:
                skipped.append(kind)
                continue
            fam, _ = rng.choice(frequent)
            edits.append((at, "parameter", fam, kind))
        elif kind == "cascade":
            c = rng.choice(COMPONENTS)
            h = header(lines[at])
            out = []
            for j in range(24):
                t = CASCADE[min(j * len(CASCADE) // 24 + rng.randrange(0, 2), len(CASCADE) - 1)]
                out.append((h + " " + t.format(c=c, a=rng.randrange(256), b=rng.randrange(256), d=rng.randrange(256),
                                              port=rng.randrange(1024, 65535), n=rng.randrange(1, 6),
                                              ms=rng.randrange(100, 5000), rid=rng.randrange(10**6))).strip())
            edits.append((at, "spread", out, kind))

    # Apply the edits from the end, so earlier positions stay valid; labels follow the lines.
    labels = ["0"] * n
    for at, how, payload, kind in sorted(edits, key=lambda e: -e[0]):
        if how == "insert":
            lines[at:at] = payload
            labels[at:at] = [kind] * len(payload)
        elif how == "spread":
            # Interleave with the next lines: one inserted line, then an original, and so on.
            span = len(payload)
            merged, merged_labels = [], []
            for j in range(span):
                merged += [payload[j], lines[at + j]]
                merged_labels += [kind, labels[at + j]]
            lines[at:at + span] = merged
            labels[at:at + span] = merged_labels
        elif how == "silence":
            fam, length = payload
            end = min(at + length, len(lines))
            keep_lines, keep_labels = lines[:at], labels[:at]
            for j in range(at, end):
                if family(lines[j]) != fam:
                    keep_lines.append(lines[j])
                    keep_labels.append(kind)
            lines = keep_lines + lines[end:]
            labels = keep_labels + labels[end:]
        elif how == "parameter":
            fam = payload
            for j in range(at, len(lines)):
                if family(lines[j]) == fam and labels[j] == "0":
                    m = list(NUMBER.finditer(lines[j]))[-1]  # the message's, not the header's
                    value = int(m.group(1))
                    lines[j] = lines[j][: m.start(1)] + str(value * 1000 if value else 100000) + lines[j][m.end(1):]
                    labels[j] = kind
                    break

    os.makedirs(args.out, exist_ok=True)
    name = os.path.splitext(os.path.basename(args.log))[0]
    with open(os.path.join(args.out, name + ".log"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, name + ".labels"), "w") as f:
        f.write("\n".join(labels) + "\n")
    if skipped:
        print(f"{name}: no material for {', '.join(skipped)}", file=sys.stderr)


if __name__ == "__main__":
    main()
