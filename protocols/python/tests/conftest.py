import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(HERE.parent))

CONFIG = """
heartbeat_seconds = 0.2
snapshot_every_seconds = 0.3
snapshot_every_steps = 200
checkpoint_every_seconds = 60
[stream]
warmup_samples = 200
warmup_steps = 20
"""


class Daemon:
    """`eddy serve` as a child process on 127.0.0.1 with OS-chosen ports."""

    def __init__(self, data_dir, config_path):
        binary = os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy"))
        self.process = subprocess.Popen(
            [binary, "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
             "--snapshots", "tcp://127.0.0.1:*", "--data-dir", str(data_dir), "--config", str(config_path),
             "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True)
        self.endpoints = {}
        while len(self.endpoints) < 3:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"eddy serve exited with {self.process.wait()}")
            name, endpoint = line.split()
            self.endpoints[name] = endpoint

    def terminate(self, timeout=20):
        """SIGTERM; returns the exit code and the seconds it took."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - start


@pytest.fixture
def start_daemon(tmp_path):
    config = tmp_path / "eddy.conf"
    config.write_text(CONFIG)
    started = []

    def start(data_dir=tmp_path / "data", extra_config="", daemon_config=""):
        # Daemon keys come before CONFIG's [stream] section; extra_config lands in or after it.
        config.write_text(daemon_config + CONFIG + extra_config)
        d = Daemon(data_dir, config)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.process.poll() is None:
            d.process.kill()
            d.process.wait()
