#!/usr/bin/env python3
"""Copies a labelled corpus with one lone glitch per file, to measure what a glitch costs a detector.

Usage: python3 scripts/inject-glitches.py SOURCE DEST GAIN SEED [FROM-TO [RUN]]   (standard library only)

For each CSV of SOURCE with an `is_anomaly` column: one value in one random feature column is set to
GAIN times that column's range (over the whole file) beyond the range, up or down at random, at a
random normal row from 600 on and at least 50 rows before the file's first labelled row (or, if
there is no room, at a normal row 50 rows clear of every labelled one). With FROM-TO (`100-500`) the
row is drawn from FROM to TO − 1 instead, under the same rule (a stream's young range); with RUN
the same value fills RUN rows in a row from there (a burst of junk), each labelled. The glitch row is labelled,
so each file has one more event, found if the glitch alerts. Other files (the manifest) are copied.
`eddy eval DEST` beside `eddy eval SOURCE` then says what the glitch did to the events after it.
"""
import csv
import os
import random
import shutil
import sys


def main() -> None:
    if len(sys.argv) not in (5, 6, 7):
        sys.exit(__doc__)
    run = int(sys.argv[6]) if len(sys.argv) == 7 else 1
    src, dst, gain, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    low, high = (int(v) for v in sys.argv[5].split('-')) if len(sys.argv) >= 6 else (600, None)
    rng = random.Random(seed)
    shutil.rmtree(dst, ignore_errors=True)
    for root, dirs, files in os.walk(src):
        dirs.sort()
        out = os.path.join(dst, os.path.relpath(root, src))
        os.makedirs(out, exist_ok=True)
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, newline='') as fh:
                rows = list(csv.reader(fh)) if name.endswith('.csv') else []
            if not rows or 'is_anomaly' not in rows[0]:
                shutil.copy(path, os.path.join(out, name))
                continue
            head, body = rows[0], rows[1:]
            label = head.index('is_anomaly')
            features = [i for i, h in enumerate(head) if h not in ('timestamp', 'is_anomaly', 'label')]
            labels = [r[label] == '1' for r in body]
            first = next((i for i, l in enumerate(labels) if l), len(body))
            end = len(body) - 1 if high is None else min(high, len(body) - 1)
            candidates = list(range(low, min(first - 50, end)))
            if not candidates:
                candidates = [i for i in range(low, end) if not any(labels[max(0, i - 50):i + 50])]
            if not candidates:
                shutil.copy(path, os.path.join(out, name))
                continue
            row, column = rng.choice(candidates), rng.choice(features)
            values = [float(r[column]) for r in body]
            width = max(values) - min(values)
            value = max(values) + gain * width if rng.random() < 0.5 else min(values) - gain * width
            for r in range(row, min(row + run, len(body))):
                body[r][column] = f"{value:.6g}"
                body[r][label] = '1'
            with open(os.path.join(out, name), 'w', newline='') as fh:
                writer = csv.writer(fh, lineterminator='\n')
                writer.writerow(head)
                writer.writerows(body)


if __name__ == '__main__':
    main()
