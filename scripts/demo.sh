#!/usr/bin/env bash
# The demo: the daemon on its embedded defaults, a synthetic eight-sensor machine with an injected
# anomaly every 5,000 samples (1,000 samples/s), beside a synthetic service log with a fault every
# 2,000 lines (200 lines/s: a new message, a burst, a silence, a slow request, an error cascade), and
# `eddy watch` printing alerts (a log alert names its template and line), snapshots and heartbeats. Runs DEMO_SECONDS (default 60; 0 = until Ctrl-C), then stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
eddy=.build/release/eddy
mkdir -p out
rm -rf out/demo-data   # each demo starts from scratch
"$eddy" serve --data-dir out/demo-data --log-level warning > out/demo-endpoints.txt &
serve=$!
feed=""
logfeed=""
cleanup() {
    [ -n "$feed" ] && kill "$feed" 2>/dev/null || true
    [ -n "$logfeed" ] && kill "$logfeed" 2>/dev/null || true
    kill -TERM "$serve" 2>/dev/null || true
    wait "$serve" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do [ -s out/demo-endpoints.txt ] && break; sleep 0.1; done
if ! kill -0 "$serve" 2>/dev/null || [ ! -s out/demo-endpoints.txt ]; then
    echo "eddy demo: the daemon did not start (a port of 7700-7703 taken? another daemon running?)" >&2
    exit 1
fi
echo "eddy demo: daemon up ($(tr '\n' ' ' < out/demo-endpoints.txt)); feeding sensors and a log, watching for ${DEMO_SECONDS:-60} s"
"$eddy" feed --demo --stream machine-1 --rate 1000 --anomaly-every 5000 2>out/demo-feed.log &
feed=$!
"$eddy" feed --demo-log --stream app-log --rate 200 --batch 20 --anomaly-every 2000 2>out/demo-log-feed.log &
logfeed=$!
"$eddy" watch --seconds "${DEMO_SECONDS:-60}"
# A feed that stopped early says why (it runs until killed), and the demo fails.
status=0
for f in "$feed:out/demo-feed.log" "$logfeed:out/demo-log-feed.log"; do
    if ! kill -0 "${f%%:*}" 2>/dev/null; then
        echo "eddy demo: a feed stopped early; ${f#*:} says:" >&2
        tail -5 "${f#*:}" >&2
        status=1
    fi
done
# What an operator's Prometheus would read meanwhile (the HTTP endpoint, 127.0.0.1:7703).
http=$(awk '$1 == "http" {print $2}' out/demo-endpoints.txt)
if [ -n "$http" ]; then
    echo "eddy demo: http://$http/metrics says:"
    python3 - "$http" <<'PY' || true
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("eddy_samples_accepted_total", "eddy_alerts_total", "eddy_train_steps_total", "eddy_up",
                        "eddy_stream_alerts_total", "eddy_score_latency_seconds_count")):
        print("  " + line)
PY
fi
exit "$status"
