#!/usr/bin/env bash
# Pipeline A of run.sh (photos -> EfficientNet-Lite0 top-1) by Weir on 500 and on 5,000 photos:
# whole-process wall time and peak PSS (measure.py) of each, and how far the larger run is from
# ten times the smaller. Cost should grow with the work, not faster, and memory stay flat.
#   bash benches/peers/linearity.sh          # WORK=/tmp/weir-peers RUNS=2; run run.sh once first
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${WORK:-/tmp/weir-peers}"
RUNS="${RUNS:-2}"
PY="${PEERS_VENV:-$HOME/.cache/weir/peers-venv}/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
WEIR_BIN="$CARGO_TARGET_DIR/release/weir"
[ -f "$WORK/weir-a.yaml" ] || { echo "run PIPELINES=a bash benches/peers/run.sh first" >&2; exit 1; }
[ -f "$WORK/photos-5000/img-04999.jpg" ] || "$WEIR_BIN" generate images "$WORK/photos-5000" --count 5000
sed -e "s#$WORK/photos#$WORK/photos-5000#" -e "s#$WORK/out/a-weir/#$WORK/out/a5000-weir/#" \
  "$WORK/weir-a.yaml" > "$WORK/weir-a5000.yaml"

results="$WORK/linearity-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
for round in $(seq "$RUNS"); do
  for size in 500 5000; do
    manifest="$WORK/weir-a.yaml" && out="$WORK/out/a-weir"
    [ "$size" = 5000 ] && manifest="$WORK/weir-a5000.yaml" && out="$WORK/out/a5000-weir"
    rm -rf "$out"
    "$PY" benches/peers/measure.py "$results" a "$size" "$round" -- "$WEIR_BIN" run --no-progress "$manifest"
  done
done
"$PY" - "$results" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
best = {size: min((r for r in runs if r["engine"] == size), key=lambda r: r["wall_s"]) for size in ("500", "5000")}
small, large = best["500"], best["5000"]
print(f"linearity: 500 -> 5000 photos: {small['wall_s']:.2f} s -> {large['wall_s']:.2f} s wall (best of the rounds), "
      f"{large['wall_s'] / (10 * small['wall_s']):.3f}x the linear time; "
      f"peak PSS {small['peak_pss_mib']:.0f} MiB -> {large['peak_pss_mib']:.0f} MiB")
PY
