#!/usr/bin/env bash
# Two builds of `weir` on one manifest, in turns (A B A B ...), each run a whole process measured
# by measure.py; prints each build's median wall time, CPU seconds and peak PSS, and the median of
# the pair-by-pair wall ratios A/B (pairing keeps the ratio fair when the machine's speed drifts).
#   bash benches/peers/paired.sh BIN_A BIN_B MANIFEST OUT_DIR [PAIRS] [MANIFEST_B]   # PAIRS=5
# OUT_DIR (the manifest's sink) is removed before every run. For the README's release-profile and
# video-decoder figures: BIN_A the changed build, BIN_B the baseline, e.g. the manifests run.sh
# writes under /tmp/weir-peers. With MANIFEST_B, B runs that manifest (one build, two manifests:
# pass the same binary twice; both manifests write to OUT_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
bin_a=$1 bin_b=$2 manifest=$3 out=$4 pairs=${5:-5} manifest_b=${6:-$3}
PY="${PEERS_VENV:-$HOME/.cache/weir/peers-venv}/bin/python"
results=$(mktemp /tmp/weir-paired-XXXXXX.jsonl)
for pair in $(seq "$pairs"); do
  for side in A B; do
    bin=$bin_a job=$manifest
    [ "$side" = B ] && bin=$bin_b job=$manifest_b
    "$PY" benches/peers/measure.py "$results" paired "$side" "$pair" -- \
      sh -c "rm -rf '$out' && exec '$bin' run --no-progress '$job'" > /dev/null
  done
done
"$PY" - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
side = {s: [r for r in runs if r["engine"] == s and r["status"] == 0] for s in "AB"}
for s in "AB":
    rs = side[s]
    print(f"{s}: wall {statistics.median(r['wall_s'] for r in rs):.2f} s, CPU {statistics.median(r['cpu_s'] for r in rs):.2f} s, "
          f"peak PSS {statistics.median(r['peak_pss_mib'] for r in rs):.0f} MiB (medians of {len(rs)})")
b = {r["round"]: r for r in side["B"]}
ratios = [r["wall_s"] / b[r["round"]]["wall_s"] for r in side["A"] if r["round"] in b]
print(f"A/B wall, pair by pair: median {statistics.median(ratios):.3f} (from {min(ratios):.3f} to {max(ratios):.3f})")
PY
