#!/usr/bin/env bash
# Fuzzes what the daemon reads from outside, each target for a fixed budget:
#   scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]   (admission, config, checkpoint)
# Builds eddy-fuzz with libFuzzer (-sanitize=fuzzer, every Swift module instrumented) in .build/fuzz,
# keeps each target's corpus in out/fuzz/<target>/corpus (seeded with valid inputs) and writes a
# crashing input to out/fuzz/<target>/crash-*; exits non-zero if any target crashed. Replay a
# crash in the normal build with `.build/debug/eddy-fuzz TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(admission config checkpoint)
build=.build/fuzz
nice swift build -c release --build-path "$build" --product eddy-fuzz \
    -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld -Xswiftc -DEDDY_FUZZ 2>&1 | grep -E "error|warning: unre|Compiling eddy|Build" || true
binary="$build/release/eddy-fuzz"
[ -x "$binary" ] || { echo "fuzz build failed" >&2; exit 1; }
status=0
for target in "${targets[@]}"; do
    dir=out/fuzz/$target
    mkdir -p "$dir/corpus"
    log=$dir/last-run.log
    # The Swift runtime's backtracer would end the process before libFuzzer writes the crashing input.
    if SWIFT_BACKTRACE=enable=no EDDY_FUZZ_TARGET=$target EDDY_FUZZ_SEEDS=$dir/corpus "$binary" "$dir/corpus" \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$dir/" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
        echo "fuzz $target: ${runs:-?} inputs in ${seconds}s, $cov, corpus $(ls "$dir/corpus" | wc -l), no crash"
    else
        status=1
        echo "fuzz $target: CRASH (see $log and $dir/crash-*)" >&2
        grep -E "Fatal error|ERROR|SUMMARY|crash-" "$log" | head -5 >&2
    fi
done
exit $status
