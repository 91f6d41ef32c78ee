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
    # A value the daemon would refuse (beyond max_abs_value) is refused here too, and so is a file
    # whose width is not the stream's declared dim.
    csv.write_text("timestamp,value\n1,0.5\n2,1e20\n")
    run = subprocess.run([EDDY, "replay", str(csv)], capture_output=True, text=True)
    assert run.returncode != 0 and "line 3" in run.stderr and "max_abs_value" in run.stderr
    conf = tmp_path / "declared.conf"
    conf.write_text("[stream.replay]\ndim = 2\n")
    csv.write_text("timestamp,value\n1,0.5\n")
    run = subprocess.run([EDDY, "replay", str(csv), "--config", str(conf)], capture_output=True, text=True)
    assert run.returncode != 0 and "declared with dim 2" in run.stderr


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
    # A stream name may hold '"' and '\\' (SPEC 3): `watch --json` still prints JSON.
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--scores", "--json", "--seconds", "20"],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    subprocess.run([EDDY, "feed", str(csv), "--endpoint", ep["ingest"], "--stream", 'odd"na\\me', "--batch", "50"],
                   check=True, capture_output=True)
    odd = False
    for line in watch.stdout:
        odd = json.loads(line)["topic"] == 'score/odd"na\\me/'
        if odd:
            break
    watch.kill()
    assert odd
    out = subprocess.run([EDDY, "snapshot", "--endpoint", ep["snapshots"], "--stream", "nope"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and 'no autoencoder snapshot of stream "nope"' in out.stderr
    assert "Usage" not in out.stderr
    daemon.terminate()


def test_feed_without_a_daemon_fails_instead_of_saying_sent(tmp_path):
    """With no daemon at the endpoint, `eddy feed` exits non-zero saying so (it printed "sent 200
    samples" and exited 0, the samples queued for nobody)."""
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    csv = tmp_path / "u.csv"
    write_csv(csv, 200, 1)
    run = subprocess.run([EDDY, "feed", str(csv), "--endpoint", f"tcp://127.0.0.1:{port}", "--stream", "s"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "no daemon took a message" in run.stderr, (run.returncode, run.stderr)


def write_labelled_corpus(root):
    """Two NAB-style files: a sine with a spike inside its labelled window, and a clean sine."""
    import math
    (root / "data" / "cat").mkdir(parents=True)
    (root / "labels").mkdir()
    def stamp(t):
        return f"2024-01-{1 + t // 1440:02d} {(t // 60) % 24:02d}:{t % 60:02d}:00"
    for name, spike in [("spiky", 1500), ("clean", None)]:
        with open(root / "data" / "cat" / f"{name}.csv", "w") as f:
            f.write("timestamp,value\n")
            for t in range(2000):
                v = math.sin(t * 2 * math.pi / 50) + (8.0 if t == spike else 0.0)
                f.write(f"{stamp(t)},{v:.5f}\n")
    windows = {"cat/spiky.csv": [[stamp(1450) + ".000000", stamp(1550) + ".000000"]], "cat/clean.csv": []}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_eval_scores_a_labelled_corpus_and_draws_plots_that_render(tmp_path):
    from PIL import Image
    corpus = tmp_path / "corpus"
    write_labelled_corpus(corpus)
    plots = tmp_path / "plots"
    run = subprocess.run([EDDY, "eval", str(corpus), "--json", "--plots", str(plots), "--extra-seeds", "1"],
                         capture_output=True, text=True, check=True)
    report = json.loads(run.stdout)
    assert all(len(report["by_seed"][p]) == 2 for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"))
    profiles = {p["profile"]: p for p in report["profiles"]}
    assert set(profiles) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    # The spike is found at the first threshold worth taking, with no false alarm: NAB's score of a
    # detection just inside the window's middle is about 0.85 of a perfect one.
    assert report["events"]["found"] == 1 and report["events"]["false_alarms"] == 0
    assert 70 < profiles["standard"]["score"] <= 100
    files = {f["file"]: f for f in report["files"]}
    assert files["cat/spiky.csv"]["windows"] == 1 and files["cat/clean.csv"]["windows"] == 0
    # One SVG per file; rendered, it shows the blue series and the red detection mark.
    svg = plots / "cat__spiky.svg"
    assert sorted(p.name for p in plots.iterdir()) == ["cat__clean.svg", "cat__spiky.svg"]
    png = tmp_path / "spiky.png"
    subprocess.run(["rsvg-convert", "-w", "1200", str(svg), "-o", str(png)], check=True)
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 460)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert (0x1F, 0x5F, 0xBF) in colours, "the series line"
    assert (0xD6, 0x27, 0x28) in colours, "the detection mark"
    assert (0xF6, 0xC9, 0xC4) in colours, "the labelled window"


def test_replay_plots_and_reads_crlf_files_like_lf_ones(tmp_path):
    lf = tmp_path / "lf.csv"
    write_csv(lf, 300, 1)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    svg = tmp_path / "replay.svg"
    a = subprocess.run([EDDY, "replay", str(lf), "--plot", str(svg)], capture_output=True, text=True, check=True)
    b = subprocess.run([EDDY, "replay", str(crlf)], capture_output=True, text=True, check=True)
    assert len(a.stdout.split()) == 300 and a.stdout == b.stdout
    assert svg.read_text().startswith("<svg") and "<polyline" in svg.read_text()


def test_replay_detail_explains_alerts_by_time_step(tmp_path):
    csv = tmp_path / "spike.csv"
    import math
    with open(csv, "w") as f:
        f.write("timestamp,value\n")
        for t in range(1500):
            f.write(f"{t},{math.sin(t * 2 * math.pi / 50) + (8.0 if t == 1200 else 0.0):.5f}\n")
    rows = subprocess.run([EDDY, "replay", "--detail", str(csv)], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert rows[0] == "sequence,error,score,alert_score,alert,warming_up,explanation"
    spike = rows[1 + 1200].split(",")
    # 8 lies far beyond the sine's range: score 1, and the explanation says so.
    assert spike[2] == "1.0" and spike[3] == "1.0" and spike[4] == "1", "the spike alerts"
    assert spike[6] == "beyond range at t 100%"
    # With the range check (and the discord, which also sees a new shape) off, the reconstruction
    # explains it: the spike is the newest value of its window and carries most of the error.
    conf = tmp_path / "no-range.conf"
    conf.write_text("[stream]\nsignals = reconstruction, period\n")
    rows = subprocess.run([EDDY, "replay", "--detail", "--config", str(conf), str(csv)],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    spike = rows[1 + 1200].split(",")
    assert spike[4] == "1" and not spike[6].startswith("beyond"), "the reconstruction alone alerts"
    top = spike[6].split("; ")[0]
    assert top.startswith("t ") and int(top.split()[1].rstrip("%")) > 50


def test_replay_detail_is_csv_a_gap_in_the_rows_is_refused_and_the_plot_shades_labels(tmp_path):
    """From review: an explanation with commas ("the last 64 values, level and all, unlike ...")
    was written unquoted, so a CSV reader saw more fields than the header; an empty line among the
    rows (a one-column export's missing value) was skipped and every later row moved up one; a file
    shorter than the warm-up printed zeros without a word; `--plot` did not shade the label column's
    runs though its legend said so."""
    import csv as csvmodule
    import math
    import numpy as np
    # The reviewer's file: a noisy sine whose rows 1300 to 1399 hold row 1300's value.
    rng = np.random.default_rng(1)
    rng.standard_normal(4000)
    x = np.sin(2 * np.pi * np.arange(2000) / 50) + 0.1 * rng.standard_normal(2000)
    x[1300:1400] = x[1300]
    data = tmp_path / "flat.csv"
    data.write_text("value,label\n" + "".join(f"{v:.5f},{int(1300 <= t < 1400)}\n" for t, v in enumerate(x)))
    out = subprocess.run([EDDY, "replay", "--detail", "--plot", str(tmp_path / "p.svg"), str(data)],
                         capture_output=True, text=True, check=True).stdout
    rows = list(csvmodule.reader(out.splitlines()))
    assert rows[0] == ["sequence", "error", "score", "alert_score", "alert", "warming_up", "explanation"]
    assert len(rows) == 2001 and all(len(r) == 7 for r in rows), [r for r in rows if len(r) != 7][:2]
    assert any("," in r[6] for r in rows[1:] if r[4] == "1"), "an explanation with a comma, quoted"
    svg = (tmp_path / "p.svg").read_text()
    assert svg.count("<title>labelled window</title>") == 1, "the label column's one run"
    gap = tmp_path / "gap.csv"
    gap.write_text("value\n" + "\n".join(str(math.sin(t / 5)) for t in range(300)) + "\n\n" + "1.0\n2.0\n\n\n")
    run = subprocess.run([EDDY, "replay", str(gap)], capture_output=True, text=True)
    assert run.returncode == 1 and "line 302: an empty line among the rows" in run.stderr, run.stderr[-300:]
    short = tmp_path / "short.csv"
    short.write_text("value\n" + "\n".join(str(math.sin(t / 5)) for t in range(100)) + "\n\n")  # a blank line at the end is fine
    run = subprocess.run([EDDY, "replay", str(short)], capture_output=True, text=True, check=True)
    assert len(run.stdout.split()) == 100 and "all 100 rows were within the stream's warm-up" in run.stderr, run.stderr
    empty = tmp_path / "empty.log"
    empty.write_text("")
    run = subprocess.run([EDDY, "replay", "--log", str(empty)], capture_output=True, text=True)
    assert run.returncode == 1 and f"no lines in {empty}" in run.stderr, "as eddy feed --log says it"


def test_eval_matches_iso_timestamps_names_files_it_leaves_and_refuses_gaps_and_empty_fields(tmp_path):
    """From review: NAB's layout with ISO timestamps (`2024-01-01T00:00:00`) matched no window; a
    file under data/ that the labels do not name was left out without a word; a row `t,,v` was read
    as `t,v`; an empty line among labelled rows was skipped (every later row one place off)."""
    import math
    root = tmp_path / "nab"
    (root / "data" / "fam").mkdir(parents=True)
    (root / "labels").mkdir()
    stamp = lambda i: f"2024-01-{1 + i // 288:02d}T{(i % 288) // 12:02d}:{(i % 12) * 5:02d}:00"
    rows = [f"{stamp(i)},{math.sin(i / 8) + (6 if i == 900 else 0):.4f}" for i in range(1200)]
    (root / "data" / "fam" / "a.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    (root / "data" / "fam" / "b.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    (root / "labels" / "combined_windows.json").write_text(json.dumps(
        {"fam/a.csv": [["2024-01-04 02:00:00.000000", "2024-01-04 04:00:00.000000"]]}))
    run = subprocess.run([EDDY, "eval", str(root), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-400:]
    assert "not scored, not in labels/combined_windows.json: fam/b.csv" in run.stderr
    report = json.loads(run.stdout)
    assert [f["file"] for f in report["files"]] == ["fam/a.csv"] and report["files"][0]["found"] == 1
    bad = rows[:]
    bad[500] = bad[500].replace(",", ",,")
    (root / "data" / "fam" / "a.csv").write_text("timestamp,value\n" + "\n".join(bad) + "\n")
    run = subprocess.run([EDDY, "eval", str(root)], capture_output=True, text=True)
    assert run.returncode == 1 and "line 502 is not timestamp,value" in run.stderr, run.stderr[-400:]
    labelled = tmp_path / "rows"
    labelled.mkdir()
    (labelled / "x.CSV").write_text("value,label\n" + "\n".join(f"{math.sin(i / 8):.4f},0" for i in range(50)) + "\n\n1,0\n")
    run = subprocess.run([EDDY, "eval", str(labelled)], capture_output=True, text=True)
    assert run.returncode == 1 and "line 52 is empty, among the rows" in run.stderr, run.stderr[-400:]


def test_eval_skip_leaves_named_columns_out_and_refuses_one_no_file_has(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with open(corpus / "s.csv", "w") as f:
        f.write("timestamp,host,value,is_anomaly\n")
        for t in range(600):
            f.write(f"{t},{t % 7},{(t % 10) / 10:.2f},0\n")
    def dim(*extra):
        run = subprocess.run([EDDY, "eval", str(corpus), "--json", *extra], capture_output=True, text=True, check=True)
        return json.loads(run.stdout)["files"][0]["dim"]
    assert dim() == 2 and dim("--skip", "host") == 1
    run = subprocess.run([EDDY, "eval", str(corpus), "--skip", "hots"], capture_output=True, text=True)
    assert run.returncode != 0 and 'no file has a column "hots" to skip' in run.stderr, run.stderr


def test_eval_reads_labelled_rows_and_reports_events_and_ranking(tmp_path):
    # Three families of two-channel series with a label column; a spike on channel 1 in two of them.
    import math
    for family, spike in (("a", 1700), ("b", 1800), ("c", None)):
        (tmp_path / "corpus" / family).mkdir(parents=True)
        with open(tmp_path / "corpus" / family / "s.csv", "w") as f:
            f.write("timestamp,value-0,value-1,is_anomaly\n")
            for t in range(2000):
                v0 = math.sin(t * 2 * math.pi / 40)
                v1 = math.cos(t * 2 * math.pi / 40) + (6.0 if t == spike else 0.0)
                f.write(f"{t},{v0:.5f},{v1:.5f},{1 if t == spike else 0}\n")
    # Without the discord signal: every window that holds the spike is unlike all before it, so on this
    # noiseless sine its surprise would tie the spike's rows after it at a score of 1.
    conf = tmp_path / "no-discord.conf"
    conf.write_text("[stream]\nsignals = range, reconstruction, period\n")
    run = subprocess.run([EDDY, "eval", str(tmp_path / "corpus"), "--json", "--config", str(conf)],
                         capture_output=True, text=True, check=True)
    report = json.loads(run.stdout)
    assert report["layout"] == "labelled-rows" and "profiles" not in report
    total = report["events_at_alert_threshold"]
    assert total["found"] == 2 and total["missed"] == 0 and total["false_alarms"] == 0
    assert total["rows"] == 6000 and total["false_alarms_per_10k_rows"] == 0
    # Two labelled rows, and the published score puts them first: average precision 1.
    assert total["auc_pr"]["score"] == 1.0
    families = {f["family"]: f for f in report["families"]}
    assert set(families) == {"a", "b", "c"} and families["c"]["auc_pr"]["score"] is None
    # "c" has no events and raised no alert: its F1, recall and precision are undefined (it scored
    # 1.00), and it chooses no threshold for the others.
    assert families["c"]["f1"] is None and families["c"]["recall"] is None and families["c"]["precision"] is None
    assert families["a"]["f1"] == 1.0 and total["f1"] == 1.0
    # Leave one family out for the threshold: the others find their spike at every threshold with no
    # false alarm, so they choose the highest (0.999), at which the family's own spike (strength 1)
    # is still found. "c", with nothing to find, gets no threshold.
    for k in ("a", "b"):
        assert families[k]["threshold_chosen_by_others"] == 0.999 and families[k]["f1_at_others_threshold"] == 1.0
    assert "threshold_chosen_by_others" not in families["c"]
    files = {f["file"]: f for f in report["files"]}
    assert files["a/s.csv"]["dim"] == 2
    start, end, first = files["a/s.csv"]["window_detections"][0]
    assert (start, end) == (1700, 1716) and first == 1700
    # Ablation: without the range rule the spike must come from the model or the discord (a window
    # holding the spike is unlike every earlier one); without all three a multivariate stream (no
    # period check) has nothing left to find it with.
    def found(without):
        run = subprocess.run([EDDY, "eval", str(tmp_path / "corpus"), "--json", "--without", without],
                             capture_output=True, text=True, check=True)
        return json.loads(run.stdout)["events_at_alert_threshold"]["found"]
    assert found("range") == 2
    assert found("range,reconstruction") == 2
    assert found("range,reconstruction,discord") == 0
    bad = subprocess.run([EDDY, "eval", str(tmp_path / "corpus"), "--without", "nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown part" in bad.stderr
    # A configuration that makes every stream a log stream is refused for a corpus of values (its
    # rows are mined from lines, of another width), and by the pipeline bench likewise.
    logs = tmp_path / "log.conf"
    logs.write_text("[stream]\nlog = true\n")
    refused = subprocess.run([EDDY, "eval", str(tmp_path / "corpus"), "--config", str(logs)], capture_output=True, text=True)
    assert refused.returncode != 0 and "--log" in refused.stderr
    refused = subprocess.run([EDDY, "bench", "pipeline", "--config", str(logs)], capture_output=True, text=True)
    assert refused.returncode != 0 and "bench logs" in refused.stderr


def test_replay_leaves_label_columns_out(tmp_path):
    plain, labelled = tmp_path / "plain.csv", tmp_path / "labelled.csv"
    write_csv(plain, 800, 2)
    lines = plain.read_text().splitlines()
    # The label column sits between the values; a learned label would change every score.
    rows = [lines[0].replace(",", ",is_anomaly,", 1)]
    for i, line in enumerate(lines[1:]):
        first, rest = line.split(",", 1)
        rows.append(f"{first},{1 if i % 7 == 0 else 0},{rest}")
    labelled.write_text("\n".join(rows) + "\n")
    # --detail prints each row's reconstruction error: equal errors, equal models.
    a = subprocess.run([EDDY, "replay", "--detail", str(plain)], capture_output=True, text=True, check=True)
    b = subprocess.run([EDDY, "replay", "--detail", str(labelled)], capture_output=True, text=True, check=True)
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 801
    assert len({row.split(",")[1] for row in a.stdout.splitlines()[1:]}) > 100, "the errors are not all alike"
    assert "left out: is_anomaly" in b.stderr
    # --skip names another column; skipping every column is an error.
    c = subprocess.run([EDDY, "replay", "--detail", "--skip", lines[0].split(",")[1], str(plain)],
                       capture_output=True, text=True, check=True)
    assert a.stdout != c.stdout
    d = subprocess.run([EDDY, "replay", "--skip", ",".join(lines[0].split(",")), str(plain)], capture_output=True, text=True)
    assert d.returncode != 0 and "no value column" in d.stderr
    # A quoted header (R's write.csv, Python's QUOTE_NONNUMERIC) behind a byte-order mark (Excel's
    # "CSV UTF-8"), quoted values, CRLF: the label column is still left out, the scores the same.
    quoted = ["\ufeff" + ",".join(f'"{h}"' for h in rows[0].split(","))]
    quoted += [",".join(f'"{v}"' if k == 0 else v for k, v in enumerate(row.split(","))) for row in rows[1:]]
    (tmp_path / "quoted.csv").write_bytes(("\r\n".join(quoted) + "\r\n").encode("utf-8"))
    e = subprocess.run([EDDY, "replay", "--detail", str(tmp_path / "quoted.csv")], capture_output=True, text=True, check=True)
    assert e.stdout == a.stdout and "left out: is_anomaly" in e.stderr


def test_replay_refuses_rows_that_are_not_whole_or_not_finite(tmp_path):
    """A value that is not finite, a row of another width than the header's (it divided by zero
    when no value was left), and an input that cannot be read are refused, naming the line."""
    csv = tmp_path / "bad.csv"
    for text, line in [("timestamp,value\n1,0.5\n2,nan\n", "line 3"), ("timestamp,value\n1,0.5\n2,inf\n", "line 3"),
                       ("timestamp,value\n1\n2,0.5\n", "line 2"), ("timestamp,a,b\n1,0.5,0.5\n2,0.5\n", "line 3")]:
        csv.write_text(text)
        run = subprocess.run([EDDY, "replay", str(csv)], capture_output=True, text=True)
        assert run.returncode == 1 and line in run.stderr, (text, run.returncode, run.stderr)
    run = subprocess.run([EDDY, "replay", "--log", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode != 0 and "cannot read" in run.stderr, run.stderr


def test_the_systemd_unit_is_hardened_and_waits_for_the_daemon_to_stop(tmp_path):
    # systemd-analyze rates the shipped unit (offline, as it would run) at an exposure of 2.0 or
    # less, and the unit gives the daemon longer to stop than its own worst case (Daemon.stop:
    # 10 + 120 + 10 + 10 s).
    import re
    import shutil
    unit = tmp_path / "eddy.service"
    shutil.copy(ROOT / "deploy" / "eddy.service", unit)
    run = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True)
    level = re.search(r"Overall exposure level for eddy\.service: ([0-9.]+)", run.stdout)
    assert level, run.stdout + run.stderr
    assert float(level.group(1)) <= 2.0, run.stdout
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit.read_text(), re.M)
    assert timeout and int(timeout.group(1)) > 150


def test_a_dying_thread_stops_the_process_with_status_70_and_a_checkpoint(tmp_path):
    """systemd's Restart=on-failure needs a non-zero exit: a daemon thread that dies (here the
    snapshot server, failed through the test hook EDDY_TEST_FAULT) must not leave the process
    running without it."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [EDDY, "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
         "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--data-dir", str(data)],
        env={**os.environ, "EDDY_TEST_FAULT": "eddy-snapshots"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 70, err
    assert "eddy-snapshots" in err and "thread failed" in err
    assert list(data.glob("checkpoint-*.eddy")), "the stop still checkpoints"


def test_inputs_that_once_crashed_a_fuzz_target_now_run_through():
    """Tests/FuzzInputs/<target>/: inputs the fuzzer found, replayed by the normal build's eddy-fuzz
    (each is handled: refused or accepted, never a crash)."""
    fuzz = str(Path(EDDY).with_name("eddy-fuzz"))
    inputs = ROOT / "Tests" / "FuzzInputs"
    targets = [d.name for d in inputs.iterdir() if d.is_dir()]
    assert targets
    for target in targets:
        out = subprocess.run([fuzz, target, str(inputs / target)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"{len(list((inputs / target).iterdir()))} inputs ran" in out.stdout


def test_feed_from_a_live_pipe_sends_each_row_as_it_is_written(start_daemon):
    """Rows piped to `eddy feed -` go out as they are read, not held until --batch of them have
    come: three rows written to a feed that is still running are scored while it runs (they sat
    in the feed until 64 rows or the end of its input)."""
    daemon = start_daemon()
    ep = daemon.endpoints
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--stream", "live", "--scores", "--json",
                              "--seconds", "30"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the subscription reaches the daemon
    feed = subprocess.Popen([EDDY, "feed", "-", "--endpoint", ep["ingest"], "--stream", "live"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def scored(n):
        seen = set()
        for line in watch.stdout:
            record = json.loads(line)
            if record["topic"] != "score/live/":
                continue
            m = record["message"]
            first = int(m.get("firstSequence", 0))
            seen.update(range(first, first + m["count"]))
            if len(seen) >= n:
                return seen
        return seen

    feed.stdin.write("timestamp,a,b\n1,0.5,1.5\n2,0.25,1.0\n3,0.75,2.0\n")
    feed.stdin.flush()
    assert scored(3) == {0, 1, 2}
    assert feed.poll() is None  # still running: the rows did not wait for the end of the input
    feed.stdin.write("4,0.5,1.25\n")
    feed.stdin.flush()
    assert scored(1) == {3}
    feed.stdin.close()
    assert feed.wait(timeout=30) == 0 and "sent 4 samples" in feed.stderr.read()
    watch.kill()
    daemon.terminate()


def _closed_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_pipeline_without_times_a_peer_chain_that_lacks_the_parts_in_the_same_run():
    # The cost of a part is measured against a stream without it, timed in turn in one invocation:
    # the peer really lacks the named signals (and only them), and every round gives a ratio.
    run = subprocess.run(
        [EDDY, "bench", "pipeline", "--dim", "2", "--counts", "--cycling", "--without", "level, stuck,repeat-cap",
         "--rounds", "3", "--seconds", "0.05", "--json"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    report = json.loads(run.stdout)
    full, peer = report["signals"].split(","), report["signals_without"].split(",")
    assert "level" in full and "stuck" in full and "reconstruction" in full
    assert [s for s in full if s not in ("level", "stuck")] == peer
    assert report["without"] == "level,stuck,repeat-cap" and report["rounds"] == 3
    ratios = [float(r) for r in report["time_ratio_by_round"].split()]
    assert len(ratios) == 3 and all(r > 0 for r in ratios)
    assert report["ns_per_sample"] > 0 and report["ns_per_sample_without"] > 0
    # Without --without, one stream and one window, as before.
    alone = json.loads(subprocess.run(
        [EDDY, "bench", "pipeline", "--dim", "2", "--seconds", "0.05", "--json"],
        capture_output=True, text=True, timeout=120, check=True).stdout)
    assert "signals_without" not in alone and alone["ns_per_sample"] > 0


def test_the_tools_refuse_bad_options_and_inputs_in_words(tmp_path):
    """From review: bad numeric options trapped (division by zero, ranges: status 132) or hung
    (`bench latency --rate 0`), inputs with no row said "sent 0 samples" or scored a perfect F1, and
    limits the daemon enforces were left for it to refuse after the tool said "sent". Each is now a
    usage error (64) or a failure in words (1), before anything is sent."""
    closed = f"tcp://127.0.0.1:{_closed_port()}"
    (tmp_path / "two.log").write_text("a\nb\n")
    (tmp_path / "header.csv").write_text("x,y\n")
    (tmp_path / "big.csv").write_text("label,v\nx,1e30\n")
    (tmp_path / "wide.csv").write_text(",".join(f"v{i}" for i in range(5000)) + "\n" + ",".join(["1"] * 5000) + "\n")
    (tmp_path / "dated.csv").write_text("time,value\n2020-01-01 00:05:00,1\n")
    (tmp_path / "bare.csv").write_text("1,2\n3,4\n")
    (tmp_path / "empty-corpus").mkdir()
    (tmp_path / "empty-corpus" / "a.csv").write_text("value,is_anomaly\n")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "log.conf").write_text("[stream]\nlog = true\n")
    nab = tmp_path / "empty-nab"
    (nab / "data" / "cat").mkdir(parents=True)
    (nab / "labels").mkdir()
    (nab / "data" / "cat" / "a.csv").write_text("timestamp,value\n")
    (nab / "labels" / "combined_windows.json").write_text(json.dumps({"cat/a.csv": []}))
    cases = [
        (["bench", "latency", "--rate", "0", "--seconds", "1"], 64, "--rate"),
        (["feed", "--demo", "--anomaly-every", "0", "--endpoint", closed], 64, "--anomaly-every"),
        (["bench", "ingest", "--dim", "0"], 64, "--dim"),
        (["bench", "train", "--dim", "0"], 64, "--dim"),
        (["bench", "pipeline", "--dim", "0"], 64, "--dim"),
        (["bench", "train", "--steps=-5"], 64, "--steps"),
        (["bench", "logs", str(tmp_path / "two.log"), "--batch", "0"], 64, "--batch"),
        (["bench", "logs", str(tmp_path / "two.log"), "--batch", "70000"], 64, "max_samples_per_message"),
        (["serve", "--log-level", "bogus"], 64, "bogus"),
        (["feed", str(tmp_path / "header.csv"), "--endpoint", closed], 1, "no samples in"),
        (["replay", str(tmp_path / "header.csv"), "--plot", str(tmp_path / "p.svg")], 1, "no samples in"),
        (["label", str(tmp_path / "big.csv"), "--stream", "s", "--endpoint", closed], 1, "max_abs_value"),
        (["feed", str(tmp_path / "wide.csv"), "--endpoint", closed], 1, "max_dim 4096"),
        (["eval", str(tmp_path / "empty-corpus")], 1, "a header and no rows"),
        (["eval", str(nab)], 1, "a header and no rows"),
        (["eval", str(tmp_path / "empty-corpus"), "--plots", str(tmp_path / "a-file")], 1, "cannot write plots"),
        (["eval", str(tmp_path / "empty-corpus"), "--log", "--plots", str(tmp_path / "p")], 64, "--plots"),
        (["replay", str(tmp_path / "header.csv"), "--config", str(tmp_path / "log.conf")], 1, "with --log"),
        # From review: a --skip that names no column sent the column it meant to leave out, and a
        # column of dates under another name than timestamp said only "is not a number".
        (["replay", str(tmp_path / "dated.csv"), "--skip", "tme"], 1, "--skip tme: no such column (the header: time, value)"),
        (["replay", str(tmp_path / "dated.csv")], 1, "in column time is not a number (--skip time leaves the column out)"),
        (["feed", str(tmp_path / "dated.csv"), "--endpoint", closed], 1, "--skip time leaves the column out"),
        (["replay", str(tmp_path / "bare.csv"), "--skip", "time"], 1, "the file has no header"),
        (["feed", str(tmp_path / "bare.csv"), "--demo", "--endpoint", closed], 64, "bare.csv is not read with it"),
        (["feed", "--demo", "--log", "--endpoint", closed], 64, "--demo and --log go one at a time"),
        # The parts --without leaves out are checked before any work, for eval and the bench alike.
        (["eval", str(tmp_path / "empty-corpus"), "--without", "level,levle"], 64, '--without: unknown part "levle"'),
        (["bench", "pipeline", "--without", "discord,bogus"], 64, '--without: unknown part "bogus"'),
        (["bench", "pipeline", "--without", ","], 64, "--without names no part"),
        (["bench", "pipeline", "--without", "level", "--rounds", "0"], 64, "--rounds"),
    ]
    for args, status, words in cases:
        run = subprocess.run([EDDY] + args, capture_output=True, text=True, timeout=30)
        assert run.returncode == status and words in run.stderr, (args, run.returncode, run.stderr[-500:])
        assert "Fatal error" not in run.stderr and "Error Domain" not in run.stderr, (args, run.stderr[-500:])
    assert not (tmp_path / "p.svg").exists()


def test_feed_keeps_messages_within_the_daemons_limits_and_reads_every_line_ending(start_daemon, tmp_path):
    """A daemon that takes at most 64 samples a message: `feed --batch 1000 --config` (its file)
    sends messages it accepts, every row arrives, and nothing is refused; rows ended by a lone CR
    (old Mac files, which `replay` read) are rows (`feed` sent none of them, from review). A log
    corpus's labels with CRLF endings are one label a line (`eval --log` counted one in all)."""
    daemon = start_daemon(daemon_config="max_samples_per_message = 64\n")
    ep = daemon.endpoints
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--scores", "--json", "--seconds", "20"],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    csv = tmp_path / "cr.csv"
    csv.write_bytes(b"a,b\r" + b"".join(f"{i % 7},{i % 5}\r".encode() for i in range(250)))
    conf = tmp_path / "limits.conf"
    conf.write_text("max_samples_per_message = 64\n")
    run = subprocess.run([EDDY, "feed", str(csv), "--endpoint", ep["ingest"], "--stream", "cr", "--batch", "1000",
                          "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "sent 250 samples" in run.stderr and "64 samples to a message" in run.stderr, run.stderr
    # The limit is the daemon's: without --config, feed's messages of 250 are refused.
    subprocess.run([EDDY, "feed", str(csv), "--endpoint", ep["ingest"], "--stream", "cr2", "--batch", "1000"],
                   check=True, capture_output=True, timeout=60)
    seen, errors = set(), []
    for line in watch.stdout:
        record = json.loads(line)
        if record["topic"].startswith("error/"):
            errors.append(record["topic"] + " " + json.dumps(record["message"]))
        if record["topic"] == "score/cr/":
            m = record["message"]
            first = int(m.get("firstSequence", 0))
            seen.update(range(first, first + m["count"]))
        if len(seen) == 250 and errors:
            break
    watch.kill()
    assert seen == set(range(250))
    assert len(errors) == 1 and "error/cr2/" in errors[0] and "exceed max_samples_per_message 64" in errors[0], errors
    # A live pipe's row ended by a lone CR goes at once, not when the next row comes (from review).
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", ep["publish"], "--stream", "live", "--scores", "--json",
                              "--seconds", "20"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    feed = subprocess.Popen([EDDY, "feed", "-", "--endpoint", ep["ingest"], "--stream", "live", "--batch", "1"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    feed.stdin.write(b"a,b\r1,2\r")
    feed.stdin.flush()
    first = None
    for line in watch.stdout:
        record = json.loads(line)
        if record["topic"] == "score/live/":
            first = record["message"]
            break
    assert first is not None and int(first.get("firstSequence", 0)) == 0
    feed.stdin.write(b"\n3,4\r\n")  # the LF after a row's CR is that row's CRLF, not an empty row
    feed.stdin.close()
    assert feed.wait(timeout=30) == 0 and b"sent 2 samples" in feed.stderr.read()
    watch.kill()
    daemon.terminate()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"".join(b"GET /item/%d ok\r\n" % i for i in range(400)))
    (logs / "app.labels").write_bytes(b"0\r\n" * 400)
    run = subprocess.run([EDDY, "eval", "--log", str(logs), "--json", "--jobs", "1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert json.loads(run.stdout)["lines"] == 400
    # Lone CRs end a log's lines as they end its labels', and as `feed --log` splits them.
    (logs / "app.log").write_bytes(b"".join(b"GET /item/%d ok\r" % i for i in range(400)))
    (logs / "app.labels").write_bytes(b"0\r" * 400)
    run = subprocess.run([EDDY, "eval", "--log", str(logs), "--json", "--jobs", "1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and json.loads(run.stdout)["lines"] == 400, run.stderr[-500:]


def daemon_with_stream(start_daemon, stream, **options):
    """A daemon (start_daemon's options) whose stream `stream` of dim 2 exists: labels and refusals need one."""
    import numpy as np
    from eddy_client import Producer, Subscriber
    from test_client import wait_scores
    daemon = start_daemon(**options)
    ep = daemon.endpoints
    with Producer(ep["ingest"]) as p, Subscriber(ep["publish"], ["score/"]) as sub:
        time.sleep(0.3)
        p.send(stream, np.ones((8, 2), np.float32))
        assert wait_scores(sub, stream, 0) is not None
    return daemon


def test_label_keeps_its_messages_within_the_daemons_bytes(start_daemon, tmp_path):
    """`eddy label --config` counts each label's bytes in a message (from review: rows of long
    labels went over max_message_bytes and the daemon refused what the tool said it sent): 50
    rows with 100-byte labels to a daemon taking messages of 4 KiB arrive in several, all taken."""
    from test_operations import exposition, get
    daemon = daemon_with_stream(start_daemon, "l", daemon_config="max_message_bytes = 4096\n", extra_config="max_labels = 64\n")
    ep = daemon.endpoints
    conf = tmp_path / "limits.conf"
    conf.write_text("max_message_bytes = 4096\n")
    rows = tmp_path / "labelled.csv"
    rows.write_text("".join(f"{('abc' * 40)[:97]}{i % 3:03d},{i % 5},{i % 7}\n" for i in range(50)))
    run = subprocess.run([EDDY, "label", str(rows), "--stream", "l", "--endpoint", ep["ingest"], "--config", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "sent 50 labelled samples" in run.stderr, run.stderr
    metric = lambda: exposition(get(f"http://{ep['http']}/metrics")[1])
    end = time.monotonic() + 10
    while metric().get("eddy_labels_accepted_total", 0) < 50 and time.monotonic() < end:
        time.sleep(0.1)
    m = metric()
    assert m.get("eddy_labels_accepted_total") == 50, {k: v for k, v in m.items() if "reject" in k and v}
    assert m.get('eddy_messages_rejected_total{code="oversized"}', 0) == 0, m
    daemon.terminate()


def test_feed_and_label_report_what_the_daemon_refuses(start_daemon, tmp_path):
    """From review: `feed` and `label` said "sent" and exited 0 for messages the daemon refused (a
    wrong dim, labels for a stream that takes none), which only `error/<stream>/` told. With the
    daemon's publish endpoint they print each refusal and exit 1; what it takes ends "none refused"
    and 0. A stream name the daemon would refuse is refused before anything is sent."""
    daemon = daemon_with_stream(start_daemon, "two")
    ep = daemon.endpoints
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n" + "".join(f"{i % 7},{i % 5}\n" for i in range(100)))
    wide = tmp_path / "wide.csv"
    wide.write_text("".join(f"{i},{i},{i}\n" for i in range(100)))
    labels = tmp_path / "labels.csv"
    labels.write_text("up,1,2\ndown,3,4\n")
    listen = ["--endpoint", ep["ingest"], "--publish", ep["publish"]]

    def run(*args):
        return subprocess.run([EDDY, *args, *listen], capture_output=True, text=True, timeout=60)

    ok = run("feed", str(rows), "--stream", "two")
    assert ok.returncode == 0 and "sent 100 samples to stream two, none refused" in ok.stderr, ok.stderr
    bad = run("feed", str(wide), "--stream", "two", "--batch", "10")
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.count("the daemon refused: dimMismatch: stream two has dim 2, the batch has 3") == 5, bad.stderr
    assert "5 more refusals" in bad.stderr and "the daemon refused 10 of its messages" in bad.stderr, bad.stderr
    nolabels = run("label", str(labels), "--stream", "two")
    assert nolabels.returncode == 1 and "takes no labels (max_labels = 0" in nolabels.stderr, nolabels.stderr
    named = run("label", str(labels), "--stream", "a/b")
    assert named.returncode == 1 and "--stream a/b: the stream name contains '/'" in named.stderr, named.stderr
    # Without --publish (and a daemon not on the default ports) nothing is listened for: "sent", 0.
    blind = subprocess.run([EDDY, "label", str(labels), "--stream", "two", "--endpoint", ep["ingest"]],
                           capture_output=True, text=True, timeout=60)
    assert blind.returncode == 0 and "refused" not in blind.stderr, blind.stderr
    # A publish endpoint with no daemon: said, and the samples still go.
    nobody = subprocess.run([EDDY, "feed", str(rows), "--stream", "two", "--endpoint", ep["ingest"], "--publish",
                             "tcp://127.0.0.1:9", "--confirm-seconds", "1"], capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 0 and "no heartbeat from tcp://127.0.0.1:9 within 1 s" in nobody.stderr, nobody.stderr
    assert "the daemon's heartbeats did not confirm it" in nobody.stderr, nobody.stderr
    daemon.terminate()


def test_label_reads_a_labelled_csv_by_its_column_names(start_daemon, tmp_path):
    """From review: `label` took the first column for the label whatever the header said, so the
    CSV a user fed (`timestamp,a,b,is_anomaly`) sent its timestamp as a value and was refused. A
    header naming a label column gives the label; its timestamp is left out."""
    from test_operations import exposition, get
    daemon = daemon_with_stream(start_daemon, "two", extra_config="max_labels = 64\n")
    ep = daemon.endpoints
    rows = tmp_path / "fed.csv"
    rows.write_text("timestamp,a,b,is_anomaly\n" + "".join(f"2024-01-01T00:0{i}:00,{i},{i + 1},{i % 2}\n" for i in range(3)))
    run = subprocess.run([EDDY, "label", str(rows), "--stream", "two", "--endpoint", ep["ingest"], "--publish", ep["publish"]],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "sent 3 labelled samples to stream two, none refused" in run.stderr, run.stderr
    end = time.monotonic() + 10
    while exposition(get(f"http://{ep['http']}/metrics")[1]).get("eddy_labels_accepted_total", 0) < 3 and time.monotonic() < end:
        time.sleep(0.1)
    assert exposition(get(f"http://{ep['http']}/metrics")[1]).get("eddy_labels_accepted_total") == 3
    # A header with a timestamp first and no label column: refused, not the timestamp taken for the label.
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("timestamp,a,b\n2024-01-01T00:00:00,1,2\n")
    run = subprocess.run([EDDY, "label", str(unlabelled), "--stream", "two", "--endpoint", ep["ingest"]],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "the header names no label column" in run.stderr, run.stderr
    daemon.terminate()


def test_watch_says_when_nothing_comes(tmp_path):
    """From review: `eddy watch` pointed at the wrong port printed nothing and exited 0. A daemon
    sends a heartbeat every second by default: ten seconds of silence are said, once."""
    quiet = socket_port()
    run = subprocess.run([EDDY, "watch", "--endpoint", f"tcp://127.0.0.1:{quiet}", "--seconds", "11"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "", run.stdout
    assert run.stderr.count(f"nothing from tcp://127.0.0.1:{quiet} in 10 s: is it the daemon's publish endpoint") == 1, run.stderr


def watch_output(alerts):
    """What `eddy watch` prints for `alerts` (Alert messages), published on their streams' alert
    topics by a PUB socket of the test's own for two seconds (a PUB drops what no subscriber takes,
    so they are sent again until then)."""
    import zmq
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    watch = subprocess.Popen([EDDY, "watch", "--endpoint", f"tcp://127.0.0.1:{port}", "--seconds", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for alert in alerts:
                pub.send_multipart([f"alert/{alert.stream}/".encode(), alert.SerializeToString()])
            time.sleep(0.1)
        return watch.communicate(timeout=30)[0]
    finally:
        pub.close(linger=0)
        context.term()


def test_watch_lays_out_a_log_alert_by_its_signal_and_cuts_long_fields():
    """From review: a blank line's alert (template "") came out in the sensor layout, with an error
    and a threshold; a 100 KB line's alert printed its 4 KB template three times; and "line N" was
    the 0-based sequence."""
    from eddy_client import pb
    blank = pb.Alert(stream="app", signal="template", reason='new template ""', template="", template_id=9, line="")
    blank.score.sequence = 7
    blank.score.score = 1
    long = pb.Alert(stream="app", signal="template", reason="new template", template="x" * 5000, template_id=10, line="y" * 5000)
    long.score.sequence = 8
    out = watch_output([blank, long])
    assert 'ALERT    app seq 7 score 1 [template] new template ""' in out, out[:500]
    assert "threshold" not in out and "error" not in out
    assert "template 10: " + "x" * 300 + "… (5000 bytes)" in out and "line: " + "y" * 300 + "… (5000 bytes)" in out
    assert max(len(l) for l in out.splitlines()) < 400


def test_watch_says_a_glitch_and_its_reason():
    """A glitch guard's alert prints its reason and the feature, not "beyond range" alone."""
    from eddy_client import pb
    alert = pb.Alert(stream="pump", signal="glitch", beyond_range=True, threshold=0.9,
                     reason="feature 1's value 1000000.0 lies 500000 times its range's width beyond it; not learned from")
    alert.score.sequence = 900
    alert.score.score = 1
    alert.top_features.add(index=1, share=1)
    line = next(l for l in watch_output([alert]).splitlines() if l.startswith("ALERT"))
    assert "seq 900" in line and line.endswith(
        "feature 1's value 1000000.0 lies 500000 times its range's width beyond it; not learned from; #1 100%"), line
    assert "beyond range at" not in line


def socket_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
