#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS_PER_TARGET seconds (default 60) and prints,
# per target, the number of executions and whether it found a crash. Exits non-zero on a crash
# (the input is left in fuzz/artifacts/<target>/, the log in fuzz/artifacts/<target>.log).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (address by default;
# `none` where AddressSanitizer is unavailable). Only a stable toolchain is assumed: cargo-fuzz
# passes nightly flags, allowed by RUSTC_BOOTSTRAP=1. Builds with debug assertions, so integer
# overflows panic too. Corpora grow in fuzz/corpus/<target>/ (not committed); the committed
# seeds in fuzz/seeds/<target>/ are read as a second corpus.
set -euo pipefail
secs="${1:-60}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
sanitizer="${FUZZ_SANITIZER:-address}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
flags=(--debug-assertions --sanitizer "$sanitizer")
cargo fuzz build "${flags[@]}"

crashed=0
printf '%-10s %12s %9s  %s\n' target executions exec/s result
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t.log"
    corpora=("corpus/$t")
    [ -d "seeds/$t" ] && corpora+=("seeds/$t")
    extra=()
    # Structured inputs: allow full-size inputs from the start.
    case "$t" in handshake | records) extra=(-len_control=0 -max_len=2048) ;; esac
    set +e
    cargo fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- \
        -max_total_time="$secs" -timeout=30 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ] && ! grep -q 'Test unit written to' "$log"; then
        result=clean
    else
        result="CRASH (exit $rc, log $PWD/$log)"
        crashed=1
    fi
    printf '%-10s %12s %9s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$result"
    if [ "$result" != clean ]; then
        grep -E 'panicked at|^(thread|ERROR|SUMMARY)|Test unit written to' "$log" | head -n 8 | sed 's/^/    /'
    fi
done
exit "$crashed"
