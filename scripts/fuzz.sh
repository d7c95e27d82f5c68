#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/, one at a time, and prints per target the number of
# executions, executions per second, wall time and whether it found a crash. Exits non-zero on
# a crash (the input is left in fuzz/artifacts/<target>/, the log in fuzz/artifacts/<target>.log).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]          each target for that long (default 60)
#   scripts/fuzz.sh --runs N [--max-time SECONDS] each target until N executions (libFuzzer
#                                                 -runs), or SECONDS (default 7200) if sooner
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (address by default;
# `none` where AddressSanitizer is unavailable), FUZZ_TIMEOUT (seconds of wall time one input may
# take before libFuzzer reports it as a hang, default 30; raise it on a machine so loaded that a
# niced run is starved for longer), FUZZ_INSTRUMENT_CRYPTO=1 (coverage in the
# cryptographic primitive crates too; see scripts/fuzz-rustc.sh). Only a stable toolchain is
# assumed: cargo-fuzz passes nightly flags, allowed by RUSTC_BOOTSTRAP=1. Builds with debug
# assertions, so integer overflows panic too. Corpora grow in fuzz/corpus/<target>/ (not
# committed); the committed seeds in fuzz/seeds/<target>/ are read as a second corpus. The
# table ends with the date, the commit and the load, for docs/SECURITY.md.
set -euo pipefail
usage() {
    echo "usage: $0 [SECONDS_PER_TARGET] | --runs N [--max-time SECONDS]" >&2
    exit 2
}
number() { case "${1:-}" in '' | *[!0-9]*) usage ;; esac }
secs=60
runs=
max_time=7200
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) number "${2:-}"; runs="$2"; shift 2 ;;
        --max-time) number "${2:-}"; max_time="$2"; shift 2 ;;
        *) number "$1"; secs="$1"; shift ;;
    esac
done
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
export RUSTC_WRAPPER="$PWD/../scripts/fuzz-rustc.sh"
# Cargo's fingerprints do not cover the wrapper: a marker in RUSTFLAGS (appended by cargo-fuzz
# to its own) rebuilds everything when the instrumentation of the crypto crates changes.
if [ "${FUZZ_INSTRUMENT_CRYPTO:-0}" != 1 ]; then
    export RUSTFLAGS="${RUSTFLAGS:-} --cfg gossipd_fuzz_plain_crypto"
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
sanitizer="${FUZZ_SANITIZER:-address}"
timeout="${FUZZ_TIMEOUT:-30}"
number "$timeout"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
flags=(--debug-assertions --sanitizer "$sanitizer")
cargo fuzz build "${flags[@]}"

if [ -n "$runs" ]; then
    limit=(-runs="$runs" -max_total_time="$max_time")
else
    limit=(-max_total_time="$secs")
fi
crashed=0
printf '%-10s %12s %9s %8s  %s\n' target executions exec/s wall result
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t.log"
    corpora=("corpus/$t")
    [ -d "seeds/$t" ] && corpora+=("seeds/$t")
    # Input sizes: a datagram is at most 1200 bytes (a little more lets the size checks be
    # reached); structured inputs get full-size inputs from the start.
    case "$t" in
        datagram) extra=(-max_len=1400) ;;
        handshake | records) extra=(-len_control=0 -max_len=2048) ;;
        dns_name) extra=(-max_len=512) ;;
        dns_query) extra=(-max_len=1500) ;;
        cert) extra=(-max_len=1024) ;;
        *) extra=() ;;
    esac
    start=$(date +%s)
    set +e
    cargo fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- \
        "${limit[@]}" -timeout="$timeout" -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    wall=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    # A crash, leak, timeout or out-of-memory input fails the run; a "slow-unit" (an input that
    # took over 10 s, e.g. on a starved machine) is written too but is no failure.
    if [ "$rc" -eq 0 ] && ! grep -qE 'Test unit written to .*/(crash|leak|timeout|oom)-' "$log"; then
        result=clean
        if [ -n "$runs" ] && [ "${execs:-0}" -lt "$runs" ]; then
            result="clean (stopped at --max-time before $runs)"
        fi
    else
        result="CRASH (exit $rc, log $PWD/$log)"
        crashed=1
    fi
    printf '%-10s %12s %9s %7ss  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$wall" "$result"
    if [ "${result#CRASH}" != "$result" ]; then
        grep -E 'panicked at|^(thread|ERROR|SUMMARY)|Test unit written to' "$log" | head -n 8 | sed 's/^/    /'
    elif grep -q 'Test unit written to .*/slow-unit-' "$log"; then
        echo "    slow units (not failures): $(grep -c 'Test unit written to .*/slow-unit-' "$log"), in $PWD/artifacts/$t/"
    fi
done
echo "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- .. || echo ' (modified)'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$crashed"
