#!/usr/bin/env bash
# Fuzzes what the daemon reads from outside, each target for a fixed budget:
#   scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]   (zmtp, admission, config, checkpoint)
#       explores: a random seed, a time budget, each target's corpus kept in out/fuzz/<target>/corpus
#   FUZZ_RUNS=N scripts/fuzz.sh
#       what CI runs: seed 1, N inputs per target, from a fresh corpus (libFuzzer still varies from
#       run to run: CI reports a new crash without failing on it; see .ci/run)
# Builds eddy-fuzz with libFuzzer (-sanitize=fuzzer, every Swift module instrumented) in .build/fuzz.
# Corpora start from valid inputs and Tests/FuzzInputs/<target> (inputs that once crashed). A
# crashing input is written to out/fuzz/<target>/crash-*; exits non-zero if any target crashed.
# Replay a crash in the normal build with `.build/debug/eddy-fuzz TARGET FILE`; once fixed, add it to
# Tests/FuzzInputs/<target>/ (the Python tests replay them).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(zmtp admission config checkpoint)
build=.build/fuzz
# A failed build exits 2, not 1 (a crash): a stale binary from an earlier build must not be fuzzed
# as if it were this code (.ci/run fails on 2 and only reports 1).
if ! output=$(nice swift build -c release --build-path "$build" --product eddy-fuzz \
    -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld -Xswiftc -DEDDY_FUZZ 2>&1); then
    echo "$output" | grep -E "error" | head -20 >&2
    echo "fuzz build failed" >&2
    exit 2
fi
echo "$output" | grep -E "warning: unre|Compiling eddy|Build" || true
binary="$build/release/eddy-fuzz"
fresh=()
trap 'rm -rf "${fresh[@]}"' EXIT
status=0
for target in "${targets[@]}"; do
    dir=out/fuzz/$target
    corpus=$dir/corpus
    budget=(-max_total_time="$seconds")
    if [ -n "${FUZZ_RUNS:-}" ]; then
        corpus=$(mktemp -d)
        fresh+=("$corpus")
        budget=(-runs="$FUZZ_RUNS" -seed=1)
    fi
    mkdir -p "$dir" "$corpus"
    known=Tests/FuzzInputs/$target
    [ -d "$known" ] || known=""
    log=$dir/last-run.log
    # The Swift runtime's backtracer would end the process before libFuzzer writes the crashing input.
    # Deterministic hashing: Swift seeds Hasher per process, which would change paths (and so the corpus).
    if SWIFT_DETERMINISTIC_HASHING=1 SWIFT_BACKTRACE=enable=no EDDY_FUZZ_TARGET=$target EDDY_FUZZ_SEEDS=$corpus "$binary" "$corpus" $known \
        "${budget[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$dir/" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
        echo "fuzz $target: ${runs:-?} inputs, $cov, corpus $(ls "$corpus" | wc -l), no crash"
    else
        status=1
        echo "fuzz $target: CRASH (see $log and $dir/crash-*)" >&2
        grep -E "Fatal error|ERROR|SUMMARY|crash-" "$log" | head -5 >&2
    fi
done
exit $status
