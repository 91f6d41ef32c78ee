"""`eddy serve` as a child process on 127.0.0.1 with OS-chosen ports: for tests, evaluation scripts
and notebooks that want a daemon of their own."""
import queue
import signal
import subprocess
import threading
import time


class LocalDaemon:
    """Starts `binary serve` with `config_path` (None: the embedded defaults) and `data_dir`;
    `endpoints` maps ingest, publish, snapshots and http to the endpoints it bound (read from its
    standard output, within `start_timeout` seconds: a daemon that prints nothing by then is killed
    and TimeoutError raised). The daemon prints them once it serves, restored models included."""

    def __init__(self, binary, data_dir, config_path=None, log_level="warning", env=None, stderr=None, start_timeout=120):
        config = ["--config", str(config_path)] if config_path else []
        self.process = subprocess.Popen(
            [str(binary), "serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
             "--snapshots", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0", "--data-dir", str(data_dir),
             *config, "--log-level", log_level],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self.endpoints = {}
        self.stopped = False  # by terminate() or kill(): an end the caller chose
        lines = queue.Queue()

        def read_endpoints():
            # Its four lines, on a thread: readline alone has no deadline.
            for _ in range(4):
                line = self.process.stdout.readline()
                lines.put(line)
                if not line:
                    return

        threading.Thread(target=read_endpoints, daemon=True).start()
        deadline = time.monotonic() + start_timeout
        try:
            while len(self.endpoints) < 4:
                try:
                    line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    raise TimeoutError(f"eddy serve printed no endpoints within {start_timeout} s") from None
                if not line:
                    raise RuntimeError(f"eddy serve exited with {self.process.wait()}")
                fields = line.split()
                if len(fields) != 2:
                    raise RuntimeError(f"eddy serve printed {line!r}, not `name endpoint`")
                self.endpoints[fields[0]] = fields[1]
        except BaseException:
            self.kill()  # never a daemon left running without a handle
            raise

    def terminate(self, timeout=20):
        """SIGTERM; returns the exit code and the seconds it took. A daemon still running after
        `timeout` seconds is killed and subprocess.TimeoutExpired raised."""
        start = time.monotonic()
        self.stopped = True
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.process.stdout.close()
        return code, time.monotonic() - start

    def kill(self):
        """SIGKILL, if it still runs."""
        self.stopped = True
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        """Stops the daemon. A daemon that exited inside the block (not by `terminate` or `kill`),
        or stopped here with a code other than 0, raises RuntimeError (unless the block raised
        already): its end is never lost."""
        died = self.process.poll()
        if died is not None:
            self.process.stdout.close()
            if kind is None and not self.stopped:
                raise RuntimeError(f"eddy serve exited with {died} while in use")
            return
        code, _ = self.terminate()
        if kind is None and code != 0:
            raise RuntimeError(f"eddy serve stopped with {code}")
