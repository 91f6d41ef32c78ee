import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(HERE.parent))

from eddy_client.local import LocalDaemon  # noqa: E402

CONFIG = """
heartbeat_seconds = 0.2
snapshot_every_seconds = 0.3
snapshot_every_steps = 200
checkpoint_every_seconds = 60
[stream]
warmup_samples = 200
warmup_steps = 20
range_warmup = 200
"""


class Daemon(LocalDaemon):
    """`eddy serve` as a child process on 127.0.0.1 with OS-chosen ports."""

    def __init__(self, data_dir, config_path, **options):
        super().__init__(os.environ.get("EDDY_BIN", str(ROOT / ".build" / "debug" / "eddy")), data_dir, config_path,
                         **options)


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
