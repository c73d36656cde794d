#!/usr/bin/env bash
# Short fuzz runs of the store's loading path, the ticket/query parsers, the
# order text rule and the cross-origin guard (fuzz/fuzz_targets). Run by hand,
# not in CI. Exits non-zero on a crash, a panic or a hang; the
# input that did it is saved under fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh            60 s per target
#   FUZZ_SECONDS=600 scripts/fuzz.sh store_load
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Without a nightly toolchain it falls back to the stable, shorter version
# of the store and query checks: the random-input property tests in
# tests/properties.rs, run with many more cases (the text rule and the guard
# have unit tests only there).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
((${#targets[@]})) || targets=(store_load take_query order_text origin_guard)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: no nightly toolchain; running the stable random-input tests instead" >&2
  PROPTEST_CASES="${PROPTEST_CASES:-50000}" exec cargo test --release --test properties -- \
    loading_any_files_gives_a_state_or_names_the_bad_file any_take_query_is_a_ticket_or_a_400
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "== fuzzing $target for ${seconds}s"
  # -timeout: one input taking over 10 s is a hang, and fails the run.
  # -rss_limit_mb: a store file must not make loading take gigabytes.
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)"
