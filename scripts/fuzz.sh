#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/fuzz_targets) for a bounded time each, from their committed corpus,
# on the stable toolchain. CI runs a few seconds per target; run it longer by hand:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      e.g. scripts/fuzz.sh 600 pdf_text
#
# Each target runs against a copy of fuzz/corpus/<target>, so the checkout's corpus only changes
# when someone commits a new seed; a crash leaves its input in fuzz/artifacts/<target>/ and fails
# the script once every target has run. WEIR_FUZZ_SANITIZER=address builds with ASan (slower
# to build and run; `none` by default), WEIR_FUZZ_TIMEOUT is the seconds one input may take before
# it counts as a hang (10). See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-5}"
shift $(($# > 0 ? 1 : 0))
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest image_header mp4_boxes pdf_text html_text)
CARGO_FUZZ_VERSION=0.13.2

# cargo-fuzz passes `-Z` flags to cargo and rustc; RUSTC_BOOTSTRAP lets the stable toolchain (all
# CI has) take them.
export RUSTC_BOOTSTRAP=1
# The instrumented build differs from the workspace's in every crate, so it has a directory of its
# own beside the workspace's, outside the checkout (and one per sanitizer, which also changes every
# crate).
SANITIZER="${WEIR_FUZZ_SANITIZER:-none}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}/fuzz"
[ "$SANITIZER" = none ] || TARGET_DIR="$TARGET_DIR-$SANITIZER"
BUILD=(--sanitizer "$SANITIZER" --debug-assertions --target-dir "$TARGET_DIR")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# fuzz/Cargo.lock pins what the workspace's Cargo.lock pins, plus libfuzzer-sys. When a dependency
# of the fuzzed crates changed since, start it again from the workspace's (which CI checks with
# --locked) rather than fail the run; the refreshed file is there to commit.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
  echo "warning: fuzz/Cargo.lock is out of date; refreshing it from Cargo.lock (commit the result)" >&2
  cp Cargo.lock fuzz/Cargo.lock
  cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
fi

echo "==> cargo fuzz build ($SANITIZER sanitizer, into $TARGET_DIR)"
cargo fuzz build "${BUILD[@]}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failed=()
for target in "${TARGETS[@]}"; do
  cp -r "fuzz/corpus/$target" "$WORK/$target"
  seeds=$(find "$WORK/$target" -type f | wc -l)
  log="$WORK/$target.log"
  echo "==> fuzz $target for ${SECONDS_PER_TARGET}s from $seeds seeds"
  if cargo fuzz run "${BUILD[@]}" "$target" "$WORK/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout="${WEIR_FUZZ_TIMEOUT:-10}" -print_final_stats=1 \
    >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    echo "    $target: ${runs:-?} runs (${rate:-?}/s), corpus $seeds -> $(find "$WORK/$target" -type f | wc -l), peak RSS ${rss:-?} MB"
  else
    echo "    $target FAILED; the end of its log:"
    tail -n 60 "$log" | sed 's/^/    /'
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found a failure in: ${failed[*]} (inputs in fuzz/artifacts/; rerun one with"
  echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run ${BUILD[*]} TARGET fuzz/artifacts/TARGET/FILE)"
  exit 1
fi
