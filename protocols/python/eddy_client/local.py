"""`eddy serve` as a child process on 127.0.0.1 with OS-chosen ports: for tests, evaluation scripts
and notebooks that want a daemon of their own."""
import signal
import subprocess
import time


class LocalDaemon:
    """Starts `binary serve` with `config_path` and `data_dir`; `endpoints` maps ingest, publish,
    snapshots and http to the endpoints it bound (read from its standard output)."""

    def __init__(self, binary, data_dir, config_path, log_level="warning", env=None, stderr=None):
        self.process = subprocess.Popen(
            [str(binary), "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
             "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--data-dir", str(data_dir),
             "--config", str(config_path), "--log-level", log_level],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self.endpoints = {}
        while len(self.endpoints) < 4:
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
