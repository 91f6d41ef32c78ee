"""Running in production: a real Prometheus scraping a real daemon, promtool on the exposition and
the shipped alert rules, systemd's notify protocol (READY / WATCHDOG / STOPPING) on a real Unix
socket, structured logs, the installable client, and the command line an operator meets."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIG, ROOT, Daemon
from eddy_client import PROTOCOL, Producer, __version__, sample_batch

EDDY = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))


def get(url, timeout=5):
    """(status, body) of a GET, 4xx and 5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError:  # not listening yet
        return None, ""


def exposition(text):
    """`name{labels}` -> value, from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(predicate, timeout, interval=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def feed(daemon, n=400, dim=4, stream="pumps"):
    """`n` samples in batches of 50, and one NaN batch of 3 (rejected: non_finite)."""
    t = np.arange(n)[:, None]
    x = (np.sin(t / 9.0 + np.arange(dim)) + 2).astype(np.float32)
    with Producer(daemon.endpoints["ingest"]) as p:
        for i in range(0, n, 50):
            p.send(stream, x[i:i + 50])
        p.socket.send_multipart([stream.encode(), sample_batch(stream, np.full((3, dim), np.nan, np.float32), 10**6)
                                 .SerializeToString()])


def test_a_real_prometheus_scrapes_the_daemon_and_finds_its_series(start_daemon, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "scripts/setup.sh python installs Debian's prometheus"
    d = start_daemon()
    http = d.endpoints["http"]
    feed(d)
    assert until(lambda: exposition(get(f"http://{http}/metrics")[1]).get("eddy_samples_accepted_total") == 400, 10)

    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: eddy\n    static_configs:\n"
        f"      - targets: ['{http}']\n")
    server = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def query(q):
            status, body = get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
            if status != 200:
                return None
            result = json.loads(body)["data"]["result"]
            return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("instance", "job"))): float(r["value"][1])
                    for r in result} or None

        accepted = until(lambda: query("eddy_samples_accepted_total"), 60, 0.5)
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        assert accepted == {(("__name__", "eddy_samples_accepted_total"),): 400.0}
        assert query('up{job="eddy"}') == {(("__name__", "up"),): 1.0}
        assert query('eddy_stream_samples_accepted_total{stream="pumps"}') == {
            (("__name__", "eddy_stream_samples_accepted_total"), ("stream", "pumps")): 400.0}
        assert query('eddy_messages_rejected_total{code="non_finite"}') == {
            (("__name__", "eddy_messages_rejected_total"), ("code", "non_finite")): 1.0}
        assert query('eddy_samples_rejected_total{code="non_finite"}') == {
            (("__name__", "eddy_samples_rejected_total"), ("code", "non_finite")): 3.0}
        assert query("eddy_up") == {(("__name__", "eddy_up"),): 1.0}
        assert query("eddy_streams") == {(("__name__", "eddy_streams"),): 1.0}
        # Histograms arrive whole: every scored run was timed.
        runs = query("eddy_score_latency_seconds_count")
        assert runs and 1 <= list(runs.values())[0] <= 9
        versions = query('eddy_stream_model_version{stream="pumps"}')
        assert versions and {dict(k)["model"] for k in versions} == {"autoencoder", "moco"}
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_promtool_accepts_the_exposition_and_the_shipped_alert_rules(start_daemon):
    promtool = shutil.which("promtool")
    assert promtool, "scripts/setup.sh python installs Debian's prometheus (promtool)"
    d = start_daemon()
    feed(d)
    http = d.endpoints["http"]
    assert until(lambda: exposition(get(f"http://{http}/metrics")[1]).get("eddy_samples_accepted_total") == 400, 10)
    status, body = get(f"http://{http}/metrics")
    assert status == 200
    # The linter: naming conventions (units, _total on counters), HELP on every family.
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
    rules = subprocess.run([promtool, "check", "rules", str(ROOT / "deploy" / "eddy-alerts.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # Each alert fires on the series that should fire it, and stays quiet on a healthy daemon.
    test = subprocess.run([promtool, "test", "rules", "eddy-alerts.test.yml"], cwd=ROOT / "deploy",
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    # Every alert in the rules is exercised by the test file.
    alerts = set(re.findall(r"- alert: (\w+)", (ROOT / "deploy" / "eddy-alerts.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "deploy" / "eddy-alerts.test.yml").read_text()))
    assert alerts == tested


class Notifications:
    """A systemd stand-in for the notify protocol: the Unix datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.received = []  # (monotonic time, message)

    def wait_for(self, predicate, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                message = self.socket.recv(4096).decode()
            except socket.timeout:
                continue
            self.received.append((time.monotonic(), message))
            if predicate(message):
                return message
        return None


def start_notified(tmp_path, stall=None, stall_seconds=30):
    notify = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    if stall:
        env["EDDY_TEST_STALL"] = stall
    config = tmp_path / "eddy.conf"
    config.write_text(f"health_stall_seconds = {stall_seconds}\n" + CONFIG)
    d = Daemon(tmp_path / "data", config, env=env)
    return d, notify


def test_systemd_hears_ready_then_the_watchdog_then_stopping(tmp_path):
    d, notify = start_notified(tmp_path)
    try:
        ready = notify.wait_for(lambda m: "READY=1" in m, 10)
        assert ready and f"MAINPID={d.process.pid}" in ready and "STATUS=serving" in ready
        # WATCHDOG_USEC 1 s: fed every half second or more often.
        for _ in range(3):
            assert notify.wait_for(lambda m: m == "WATCHDOG=1", 2)
        assert get(f"http://{d.endpoints['http']}/readyz")[0] == 200
        d.process.send_signal(signal.SIGTERM)
        assert notify.wait_for(lambda m: m == "STOPPING=1", 10)
        assert d.process.wait(timeout=30) == 0
    finally:
        if d.process.poll() is None:
            d.process.kill()


def test_a_stalled_thread_starves_the_watchdog_and_fails_healthz(tmp_path):
    """EDDY_TEST_STALL keeps the trainer from coming round its loop: within health_stall_seconds the
    watchdog stops being fed (systemd would restart the daemon) and /healthz answers 503."""
    d, notify = start_notified(tmp_path, stall="eddy-trainer", stall_seconds=1)
    try:
        assert notify.wait_for(lambda m: "READY=1" in m, 10)
        status = notify.wait_for(lambda m: m.startswith("STATUS=unhealthy"), 5)
        assert status == "STATUS=unhealthy: stalled eddy-trainer"
        code, body = get(f"http://{d.endpoints['http']}/healthz")
        assert code == 503 and json.loads(body)["stalled"] == ["eddy-trainer"]
        # No WATCHDOG=1 for well over the watchdog's second.
        assert notify.wait_for(lambda m: m == "WATCHDOG=1", 2.5) is None
        code, body = get(f"http://{d.endpoints['http']}/metrics")
        assert exposition(body)["eddy_up"] == 0
        # The stall does not keep the daemon from stopping.
        d.process.send_signal(signal.SIGTERM)
        assert d.process.wait(timeout=30) == 0
    finally:
        if d.process.poll() is None:
            d.process.kill()


def test_json_logs_are_one_object_per_line_with_metadata(tmp_path):
    config = tmp_path / "eddy.conf"
    config.write_text(CONFIG)
    proc = subprocess.Popen(
        [EDDY, "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--snapshots",
         "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--config", str(config),
         "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(4):
        proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines()]
    assert len(records) >= 3
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    serving = next(r for r in records if r["message"] == "eddy serving")
    assert serving["level"] == "info" and serving["endpoint.http"].startswith("127.0.0.1:")
    assert records[-1]["message"] == "stopped"


def test_under_journald_records_carry_syslog_priorities(tmp_path):
    """JOURNAL_STREAM naming standard error (as systemd sets it) turns text logs into sd-daemon
    priority prefixes, so `journalctl -p warning` filters them."""
    config = tmp_path / "eddy.conf"
    config.write_text(CONFIG)
    read, write = os.pipe()
    st = os.fstat(write)
    proc = subprocess.Popen(
        [EDDY, "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--snapshots",
         "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=write, text=True,
        env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    os.close(write)
    for _ in range(4):
        proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    with os.fdopen(read) as f:
        lines = f.read().splitlines()
    assert lines and all(re.match(r"^<[2-7]>", line) for line in lines), lines
    assert any(line.startswith("<6>eddy serving ") for line in lines)


def test_the_command_line_an_operator_meets(tmp_path):
    version = subprocess.run([EDDY, "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    match = re.fullmatch(r"eddy (\d+\.\d+\.\d+) \(wire protocol (eddy\.v\d+)\)\n", version.stdout)
    assert match, version.stdout
    # The client speaks the daemon's protocol, and its major version says which.
    assert match.group(2) == PROTOCOL and __version__.split(".")[0] == PROTOCOL.removeprefix("eddy.v")
    proto = (ROOT / "protocols" / "eddy" / "v1" / "eddy.proto").read_text()
    assert re.search(r"^package (eddy\.v\d+);", proto, re.M).group(1) == PROTOCOL

    for shell, marker in (("bash", "-F _eddy eddy"), ("zsh", "#compdef eddy"), ("fish", "complete -c 'eddy'")):
        script = subprocess.run([EDDY, "--generate-completion-script", shell], capture_output=True, text=True)
        assert script.returncode == 0 and marker in script.stdout
        assert all(sub in script.stdout for sub in ("serve", "feed", "watch", "replay", "bench"))

    # Help names no path of a development checkout.
    commands = [[], ["serve"], ["feed"], ["watch"], ["snapshot"], ["replay"], ["eval"], ["bench"], ["keygen"]]
    bench = subprocess.run([EDDY, "bench", "--help"], capture_output=True, text=True).stdout
    commands += [["bench", name] for name in re.findall(r"^  ([a-z-]+) +\S", bench.split("SUBCOMMANDS:")[1], re.M)]
    assert len(commands) > 12
    for command in commands:
        out = subprocess.run([EDDY, *command, "--help"], capture_output=True, text=True)
        assert out.returncode == 0, (command, out.stderr)
        for path in (".build", "shared/", ".md", "scripts/", "Sources/", "deploy/", "protocols/", "out/"):
            assert path not in out.stdout, (command, path, out.stdout)

    # The configuration an installed binary documents is the shipped file.
    printed = subprocess.run([EDDY, "serve", "--print-config"], capture_output=True, text=True)
    assert printed.stdout == (ROOT / "deploy" / "eddy.conf").read_text()


def test_pip_installs_the_client_into_a_fresh_venv_and_it_talks_to_the_daemon(start_daemon, tmp_path):
    source = tmp_path / "client"
    shutil.copytree(ROOT / "protocols" / "python", source, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    d = start_daemon()
    program = f"""
import numpy as np, eddy_client
from eddy_client import Producer, Subscriber
with Subscriber({d.endpoints['publish']!r}, ["score/"]) as s, Producer({d.endpoints['ingest']!r}) as p:
    import time; time.sleep(0.5)
    p.send("fresh", np.ones((10, 3), np.float32))
    topic, m = s.recv(timeout_ms=5000)
    print(eddy_client.__version__, topic, m.count)
"""
    # Run from elsewhere: only the installed package can be imported.
    out = subprocess.run([python, "-c", program], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [__version__, "score/fresh/", "10"]


def test_a_data_directory_it_cannot_write_stops_the_start_and_a_lost_final_checkpoint_fails_the_stop(start_daemon, tmp_path):
    """From review: `--data-dir` on a path where nothing can be written served as usual, and at the
    stop logged a raw Foundation error and exited 0, its state lost. Now the daemon does not start
    (exit 1, the path and the reason), and one whose directory goes away while it runs exits 1 at
    the stop, saying the final checkpoint was not written."""
    from conftest import Daemon
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "plain.conf"
    config.write_text("")
    with pytest.raises(RuntimeError, match="exited with 1"):
        Daemon(blocker / "data", config, stderr=subprocess.PIPE)
    run = subprocess.run([EDDY, "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
                          "--snapshots", "tcp://127.0.0.1:*", "--http", "", "--data-dir", str(blocker / "data")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and f"create the data directory {blocker}" in run.stderr, run.stderr[-600:]
    assert "Error Domain" not in run.stderr, run.stderr[-600:]
    # A directory that is there at the start and gone (a file in its place) at the stop.
    data = tmp_path / "data"
    daemon = start_daemon(data_dir=data)
    assert data.is_dir() and oct(data.stat().st_mode & 0o777) == "0o700"
    shutil.rmtree(data)
    data.write_text("not a directory")
    code, _ = daemon.terminate()
    assert code == 1


def test_a_restarted_daemon_serves_restored_models_at_once_and_a_start_that_fails_ends_at_once(start_daemon, tmp_path):
    """From review: a daemon restarted on a checkpoint answered NOT_FOUND to a snapshot request for
    a moment after it printed its endpoints; and one whose ingest port was taken hung for 120 s one
    start in three before it exited 1: its trainer, started beside ingest, blocked publishing the
    restored models into ingest's pipe, which nothing read, and the stop waited for it."""
    from eddy_client import fetch_snapshot
    data = tmp_path / "data"
    daemon = start_daemon(data_dir=data)
    with Producer(daemon.endpoints["ingest"]) as p:
        p.send("kept", np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32))
    version = fetch_snapshot(daemon.endpoints["snapshots"], "kept", "moco", wait_s=60).message.version
    assert daemon.terminate()[0] == 0
    for _ in range(3):
        again = start_daemon(data_dir=data)
        assert fetch_snapshot(again.endpoints["snapshots"], "kept", "moco").message.version >= version
        assert again.terminate()[0] == 0
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        for _ in range(5):
            run = subprocess.run([EDDY, "serve", "--config", str(tmp_path / "eddy.conf"), "--data-dir", str(data),
                                  "--ingest", f"tcp://127.0.0.1:{taken.getsockname()[1]}", "--publish", "tcp://127.0.0.1:*",
                                  "--snapshots", "tcp://127.0.0.1:*", "--http", ""],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 1 and "Address already in use" in run.stderr, run.stderr[-500:]
            assert "did not stop in time" not in run.stderr, run.stderr[-500:]
    finally:
        taken.close()


def test_check_config_says_whether_a_start_would_go_through_without_starting(tmp_path):
    """From review: there was no way to check a file before a restart but to start a second daemon,
    and `--print-config --config FILE` printed the defaults, the file ignored."""
    good = tmp_path / "good.conf"
    good.write_text("max_streams = 10\n[stream.pump-7]\ndim = 8\n")
    data = tmp_path / "never-made"
    run = subprocess.run([EDDY, "serve", "--check-config", "--config", str(good), "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith(f"configuration ok: {good}, 1 declared streams"), run.stdout + run.stderr
    assert not data.exists(), "nothing made or written"
    for text, why in [("max_streams = 4\nmax_streams = 5\n", "line 2: max_streams is set twice in this section (first on line 1)"),
                      ("max_stream = 10\n", "max_stream: unknown key"),
                      (f"curve_secret_key = {tmp_path / 'none.key'}\ncurve_allowed_clients = {tmp_path}\n", "none.key")]:
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        run = subprocess.run([EDDY, "serve", "--check-config", "--config", str(bad)], capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and why in run.stderr, (text, run.stderr[-400:])
    run = subprocess.run([EDDY, "serve", "--print-config", "--config", str(good)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "--check-config --config" in run.stderr, run.stderr[-400:]


def test_a_second_daemon_on_the_same_data_directory_does_not_start(start_daemon, tmp_path):
    """From review: a second daemon, started on the live one's data directory to try a
    configuration, served, numbered its checkpoints among the live one's, and the live one's next
    start restored the second's streams too. The directory is now locked while a daemon holds it."""
    data = tmp_path / "data"
    first = start_daemon(data_dir=data)
    run = subprocess.run([EDDY, "serve", "--data-dir", str(data), "--ingest", "tcp://127.0.0.1:*",
                          "--publish", "tcp://127.0.0.1:*", "--snapshots", "tcp://127.0.0.1:*", "--http", ""],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr[-500:]
    assert f"the data directory {data} is in use by another eddy (pid {first.process.pid})" in run.stderr, run.stderr[-500:]
    assert first.terminate()[0] == 0
    second = start_daemon(data_dir=data)  # free once the first has stopped
    assert second.terminate()[0] == 0


def test_endpoints_on_localhost_and_ipv6_loopback_bind_and_one_without_a_transport_is_named(tmp_path):
    """From review: SPEC 2.1 allows TCP on `localhost` and `[::1]`, and both failed to bind
    (`zmq_bind(tcp://localhost:0): No such device`); `--ingest 127.0.0.1:0`, without its transport,
    was refused as "reachable beyond this machine"."""
    base = [EDDY, "serve", "--http", "", "--data-dir", str(tmp_path / "data")]
    run = subprocess.run(base + ["--ingest", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "ingest 127.0.0.1:0 is not an endpoint" in run.stderr, run.stderr[-500:]
    assert "reachable beyond" not in run.stderr
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    run = subprocess.run(base[:2] + ["--http", f"127.0.0.1:{taken.getsockname()[1]}", "--data-dir", str(tmp_path / "data"),
                                     "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
                                     "--snapshots", "tcp://127.0.0.1:*"], capture_output=True, text=True, timeout=60)
    taken.close()
    assert run.returncode == 1 and run.stderr.rstrip().endswith(": Address already in use"), run.stderr[-500:]
    assert "descriptor:" not in run.stderr
    ipv6 = any(line.split()[0] == "0" * 31 + "1" for line in open("/proc/net/if_inet6")) if os.path.exists(
        "/proc/net/if_inet6") else False
    args = ["--ingest", "tcp://localhost:*", "--publish", "tcp://[::1]:*" if ipv6 else "tcp://localhost:*",
            "--snapshots", "tcp://127.0.0.1:*"]
    daemon = subprocess.Popen(base + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [daemon.stdout.readline().split() for _ in range(3)]
        endpoints = dict(line for line in lines if len(line) == 2)
        assert endpoints.get("ingest", "").startswith("tcp://127.0.0.1:"), (lines, daemon.stderr.read() if daemon.poll() else "")
        assert endpoints["publish"].startswith("tcp://[::1]:" if ipv6 else "tcp://127.0.0.1:"), endpoints
        from eddy_client import Subscriber
        with Subscriber(endpoints["publish"], ["hb/"]) as sub:
            assert sub.recv(timeout_ms=5000) is not None, "a heartbeat over the endpoint it printed"
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
