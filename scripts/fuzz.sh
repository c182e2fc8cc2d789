#!/usr/bin/env bash
# Runs every cargo-fuzz target of torronto for a set time and reports, per target, the
# executions run and the crashes found.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus
# grows in fuzz/corpus/<target>; crashes are saved in fuzz/artifacts/<target>/ and
# can be replayed with `cargo +nightly fuzz run <target> <file>`. Every crash found
# becomes a regression test in core (core/tests/regressions.rs, core/src/wire/tests.rs).
# Exits non-zero if any target crashed.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz (and rustup toolchain install nightly)" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "==> building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build || exit 2

total_execs=0
total_crashes=0
printf '%-16s %12s %8s %10s\n' target executions crashes corpus > /tmp/torronto-fuzz-summary.$$
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="artifacts/$t.log"
    echo "==> fuzzing $t for ${seconds}s (log: fuzz/$log)"
    cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    execs=${execs:-0}
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        # A crash libFuzzer could not save still counts; show the log.
        crashes=1
        tail -40 "$log"
    fi
    corpus=$(find "corpus/$t" -type f | wc -l)
    printf '%-16s %12s %8s %10s\n' "$t" "$execs" "$crashes" "$corpus" >> /tmp/torronto-fuzz-summary.$$
    total_execs=$((total_execs + execs))
    total_crashes=$((total_crashes + crashes))
    if [ "$crashes" -gt 0 ]; then
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5
        find "artifacts/$t" -type f -newer "$log" -o -type f -name 'crash-*' | head -5
    fi
done
echo
cat /tmp/torronto-fuzz-summary.$$
rm -f /tmp/torronto-fuzz-summary.$$
printf '%-16s %12s %8s\n' total "$total_execs" "$total_crashes"
[ "$total_crashes" -eq 0 ]
