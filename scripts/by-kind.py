#!/usr/bin/env python3
"""Events found per anomaly kind: an `eddy eval --json` report joined with a corpus's MANIFEST.json.

Usage: eddy eval DIR --json > report.json; python scripts/by-kind.py report.json DIR [more pairs...]

Each labelled event of the report (a window, with its first alert or none) is matched to the
manifest's anomaly that starts at the window's first row; the table counts, per kind, the events
found and how long after its start the first alert came (median rows).
"""
import json
import statistics
import sys
from pathlib import Path


def main(args):
    if len(args) < 2 or len(args) % 2:
        sys.exit(__doc__)
    found, total, delays = {}, {}, {}
    for report_path, corpus in zip(args[::2], args[1::2]):
        report = json.loads(Path(report_path).read_text())
        manifest = json.loads((Path(corpus) / "MANIFEST.json").read_text())
        anomalies = {f["file"]: {a["start"]: a for a in f["anomalies"]} for f in manifest["files"]}
        for f in report["files"]:
            for start, _end, first in f["window_detections"]:
                kind = anomalies[f["file"]][start]["kind"]
                total[kind] = total.get(kind, 0) + 1
                if first is not None:
                    found[kind] = found.get(kind, 0) + 1
                    delays.setdefault(kind, []).append(first - start)
    print(f"{'kind':18} {'found':>7} {'share':>6}  median delay (rows)")
    for kind in sorted(total):
        n, k = total[kind], found.get(kind, 0)
        delay = f"{statistics.median(delays[kind]):.0f}" if kind in delays else "-"
        print(f"{kind:18} {k:3d}/{n:<3d} {k / n:6.2f}  {delay}")
    all_found, all_total = sum(found.values()), sum(total.values())
    print(f"{'all':18} {all_found:3d}/{all_total:<3d} {all_found / all_total:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
