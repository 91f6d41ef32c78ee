"""The command-line tools against a real daemon: feed, watch, snapshot, replay."""
import json
import os
import subprocess
import time
from pathlib import Path

from conftest import ROOT

EDDY = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))


def write_csv(path, rows, columns):
    with open(path, "w") as f:
        f.write(",".join(["timestamp"] + [f"c{i}" for i in range(columns)]) + "\n")
        for t in range(rows):
            values = [f"{((t * (i + 3)) % 17) / 7.0:.4f}" for i in range(columns)]
            f.write(",".join([f"2024-01-01 00:{t // 60:02d}:{t % 60:02d}"] + values) + "\n")


def test_replay_prints_one_score_per_row_deterministically(tmp_path):
    csv = tmp_path / "u.csv"
    write_csv(csv, 300, 1)
    first = subprocess.run([EDDY, "replay", str(csv)], capture_output=True, text=True, check=True).stdout.split()
    second = subprocess.run([EDDY, "replay", "-"], input=csv.read_text(), capture_output=True, text=True,
                            check=True).stdout.split()
    assert len(first) == 300 and first == second
    assert all(0.0 <= float(x) <= 1.0 for x in first)


def test_replay_rejects_a_bad_row_with_its_line_number(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("timestamp,value\n1,0.5\n2,oops\n")
    run = subprocess.run([EDDY, "replay", str(csv)], capture_output=True, text=True)
    assert run.returncode != 0 and "line 3" in run.stderr


def test_feed_and_watch_carry_every_sample(start_daemon, tmp_path):
    daemon = start_daemon()
    ep = daemon.endpoints
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--stream", "csv", "--scores", "--json",
                              "--seconds", "20"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the subscription reaches the daemon
    csv = tmp_path / "three.csv"
    write_csv(csv, 200, 3)
    subprocess.run([EDDY, "feed", str(csv), "--endpoint", ep["ingest"], "--stream", "csv", "--batch", "50"],
                   check=True, capture_output=True)
    seen = set()
    for line in watch.stdout:
        record = json.loads(line)
        if record["topic"] == "score/csv/":
            m = record["message"]
            first = int(m.get("firstSequence", 0))
            seen.update(range(first, first + m["count"]))
        if len(seen) == 200:
            break
    watch.kill()
    assert seen == set(range(200))
    out = subprocess.run([EDDY, "snapshot", "--endpoint", ep["snapshots"], "--stream", "nope"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and 'no autoencoder snapshot of stream "nope"' in out.stderr
    assert "Usage" not in out.stderr
    daemon.terminate()
