#!/usr/bin/env bash
# RUSTC_WRAPPER of scripts/fuzz.sh: compiles the cryptographic primitive crates (curves,
# signatures, hashes, ciphers) without libFuzzer's coverage instrumentation, and everything else
# as cargo-fuzz asks. AddressSanitizer and debug assertions stay on everywhere.
#
# Why: with `-sanitizer-coverage-trace-compares`, every comparison in constant-time field
# arithmetic calls into libFuzzer; perf showed half of the crypto-heavy targets' time in
# `__sanitizer_cov_trace_*cmp*` under curve25519-dalek, and the "features" it reports (limbs of
# field elements) are noise that grows the corpus with no meaning for our code. Coverage of
# gossip-core, dns-front, snow (the Noise state machine parses untrusted lengths) and every
# other crate is kept. FUZZ_INSTRUMENT_CRYPTO=1 instruments these crates too.
set -euo pipefail
rustc="$1"
shift
plain=0
if [ "${FUZZ_INSTRUMENT_CRYPTO:-0}" != 1 ]; then
    prev=
    for a in "$@"; do
        if [ "$prev" = --crate-name ]; then
            case "$a" in
                curve25519_dalek | ed25519_dalek | ed25519 | signature | sha2 | blake2 | digest | \
                    chacha20 | chacha20poly1305 | poly1305 | universal_hash | aead | cipher | \
                    crypto_common | block_buffer | inout | subtle | zeroize | fiat_crypto) plain=1 ;;
            esac
            break
        fi
        prev="$a"
    done
fi
if [ "$plain" = 0 ]; then
    exec "$rustc" "$@"
fi
args=()
for a in "$@"; do
    case "$a" in
        -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
        *) args+=("$a") ;;
    esac
done
exec "$rustc" "${args[@]}"
