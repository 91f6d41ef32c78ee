#!/usr/bin/env bash
# Installs what Eddy needs on a fresh Debian machine, then builds it.
#   scripts/setup.sh            system packages + debug build
#   scripts/setup.sh release    system packages + release build (benchmarks, demo)
#   scripts/setup.sh python     also the Python venv (.venv) for benchmarks and cross-language tests
#   scripts/setup.sh corpus     a venv (.venv-corpus) with GutenTAG for scripts/make-corpus.py
set -euo pipefail
cd "$(dirname "$0")/.."

# librsvg2-bin: rsvg-convert, which the tests use to render `eddy eval --plots` SVGs to PNG.
# systemd: systemd-analyze, which a test runs on deploy/eddy.service (its hardening).
packages=(libzmq3-dev libsodium-dev libopenblas-dev pkg-config python3-venv librsvg2-bin systemd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null; then
    echo "setup: a Swift 6 toolchain is required (swift.org/install); 'swift' is not on PATH" >&2
    exit 1
fi

for arg in "$@"; do
    case "$arg" in
    python)
        # The tests' real Prometheus (scraping a daemon) and promtool (metrics and alert rules).
        if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
            echo "setup: installing prometheus"
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            $sudo apt-get update -qq
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
            # The tests need its binaries only: Debian enables and starts a server on every address
            # (:9090, no authentication), which is left off.
            $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
        if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
        .venv/bin/pip install -q --disable-pip-version-check -r protocols/python/requirements.txt threadpoolctl
        ;;
    corpus)
        if [ ! -x .venv-corpus/bin/python ]; then python3 -m venv .venv-corpus; fi
        .venv-corpus/bin/pip install -q --disable-pip-version-check -r scripts/requirements-corpus.txt
        ;;
    release) swift build -c release ;;
    debug) swift build ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
    esac
done
