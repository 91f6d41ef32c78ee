#!/usr/bin/env python3
"""A producer's rate under a flood of CURVE HELLOs, with and without `ingest_handshakes_per_second`.

Anyone who reaches the ingest port can open a connection and send a HELLO: the daemon answers each
with a few public-key operations on its ingest thread. A HELLO can be replayed, so a flood costs its
sender a TCP connection and 266 bytes each. For each setting this starts a CURVE daemon, runs an
allowed producer (pyzmq, batches of 256 samples of dim 8, as fast as the daemon takes them) for
`--seconds` alone and then for as long beside `--flooders` threads that connect, send the greeting
and one replayed HELLO, and close, and reports the samples accepted per second in both windows and
the HELLOs sent. `--producer feed` uses `eddy feed --demo` (eight sensors, as fast as it goes)
instead of pyzmq, a producer that asks more of ingest.

    .venv/bin/python scripts/hello-flood.py [--eddy .build/release/eddy] [--seconds 10] [--flooders 8]
"""
import argparse
import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import zmq
from zmq.utils import z85

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "protocols" / "python"))
from eddy_client import CurveKeys, Producer  # noqa: E402
from eddy_client.local import LocalDaemon  # noqa: E402

GREETING = b"\xff" + b"\0" * 8 + b"\x7f\x03\x01" + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31


def hello(server_public):
    """One valid HELLO command frame (RFC 26) to `server_public`, from a fresh transient key."""
    na = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    assert na.sodium_init() >= 0
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    na.crypto_box_keypair(pk, sk)
    short = (1).to_bytes(8, "big")
    box = ctypes.create_string_buffer(80)
    assert na.crypto_box_easy(box, b"\0" * 64, ctypes.c_ulonglong(64), b"CurveZMQHELLO---" + short, server_public, sk.raw) == 0
    body = b"\x05HELLO" + b"\x01\x00" + b"\0" * 72 + pk.raw + short + box.raw
    assert len(body) == 200
    return bytes([4, 200]) + body


def accepted(http):
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("eddy_samples_accepted_total "):
            return float(line.split()[1])
    return 0.0


def run(eddy, per_second, seconds, flooders, keys_dir, producer):
    config = Path(keys_dir) / f"flood-{per_second}.conf"
    config.write_text(f'curve_secret_key = "{keys_dir}/server.key"\ncurve_allowed_clients = "{keys_dir}/clients"\n'
                      f"ingest_handshakes_per_second = {per_second}\n")
    keys = CurveKeys.load(f"{keys_dir}/server.pub", f"{keys_dir}/clients/producer.key")
    frame = GREETING + hello(z85.decode(keys.server_public))
    with tempfile.TemporaryDirectory() as data, LocalDaemon(eddy, data, config) as d:
        ingest, http = d.endpoints["ingest"], d.endpoints["http"]
        host, port = ingest.removeprefix("tcp://").rsplit(":", 1)
        x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
        stop, flooding = threading.Event(), threading.Event()
        sent = [0] * flooders

        def produce():
            if producer == "feed":
                feed = subprocess.Popen([eddy, "feed", "--demo", "--stream", "s", "--rate", "0", "--batch", "256",
                                         "--endpoint", ingest, "--server-key", f"{keys_dir}/server.pub",
                                         "--client-key", f"{keys_dir}/clients/producer.key"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                stop.wait()
                feed.terminate()
                feed.wait()
                return
            with Producer(ingest, curve=keys) as p:
                while not stop.is_set():
                    p.send("s", x)

        def flood(k):
            flooding.wait()
            while not stop.is_set():
                try:
                    s = socket.create_connection((host, int(port)), timeout=2)
                    s.sendall(frame)
                    s.close()
                    sent[k] += 1
                except OSError:
                    time.sleep(0.001)

        threads = [threading.Thread(target=produce)] + [threading.Thread(target=flood, args=(k,)) for k in range(flooders)]
        for t in threads:
            t.start()
        time.sleep(2)  # the producer's handshake, and warm-up
        a0 = accepted(http)
        time.sleep(seconds)
        a1 = accepted(http)
        flooding.set()
        time.sleep(1)
        s0, b0 = sum(sent), accepted(http)
        time.sleep(seconds)
        b1, s1 = accepted(http), sum(sent)
        stop.set()
        for t in threads:
            t.join()
        return (a1 - a0) / seconds, (b1 - b0) / seconds, (s1 - s0) / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eddy", default=str(ROOT / ".build" / "release" / "eddy"))
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flooders", type=int, default=8)
    ap.add_argument("--settings", default="0,500", help="ingest_handshakes_per_second values, in turn")
    ap.add_argument("--producer", choices=["pyzmq", "feed"], default="pyzmq")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as keys_dir:
        os.makedirs(f"{keys_dir}/clients", mode=0o755)
        for name, where in (("server", keys_dir), ("producer", f"{keys_dir}/clients")):
            subprocess.run([args.eddy, "keygen", name, "--directory", where], check=True, capture_output=True)
        print(f"{'ingest_handshakes_per_second':>28}  {'alone (samples/s)':>18}  {'flooded (samples/s)':>20}  {'ratio':>6}  {'HELLOs/s sent':>14}")
        for setting in args.settings.split(","):
            alone, flooded, hellos = run(args.eddy, setting.strip(), args.seconds, args.flooders, keys_dir, args.producer)
            print(f"{setting:>28}  {alone:18.0f}  {flooded:20.0f}  {flooded / alone:6.2f}  {hellos:14.0f}")


if __name__ == "__main__":
    main()
