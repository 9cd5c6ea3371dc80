#!/usr/bin/env bash
# The local autoscaler against fixed pools: a two-pool job whose gpu step is genuinely slow (an
# all-MiniLM-L6-v2 embedding of ~150-word texts, one thread per process) and whose cpu steps are
# fast, run three ways on this machine — fixed at the lower bounds (cpu=1,gpu=1), fixed at the
# upper bounds (cpu=1,gpu=3), autoscaled (cpu=1..2,gpu=1..3) — round after round, interleaved.
# Prints each run's wall time and worker-seconds (seconds worker processes were alive, summed),
# then the median of each.
#
#   bash benches/autoscaling.sh [TEXTS=240] [ROUNDS=3]
#
# Needs the weir binary ($WEIR, default target/release/weir, else `weir` on the PATH) and the
# MiniLM weights ($WEIR_MODELS, default ~/.cache/weir/models; scripts/fetch-models.sh fetches them).
set -euo pipefail
TEXTS="${1:-240}"
ROUNDS="${2:-3}"
cd "$(dirname "$0")/.."
WEIR="${WEIR:-target/release/weir}"
[ -x "$WEIR" ] || WEIR="$(command -v weir)"
MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
WEIGHTS="$MODELS/all-MiniLM-L6-v2/model.safetensors"
[ -f "$WEIGHTS" ] || { echo "no MiniLM weights at $WEIGHTS: run scripts/fetch-models.sh" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/texts"
words=(river mountain engine pipeline image frame cluster worker model tensor batch stream harbour
  lantern orchard signal memory budget photon granite)
for ((i = 0; i < TEXTS; i++)); do
  text="Text $i."
  for ((w = 0; w < 150; w++)); do text+=" ${words[$(((i * 7 + w * 13 + w * w) % 20))]}"; done
  printf '%s.\n' "$text" > "$work/texts/t$(printf %05d "$i").txt"
done

manifest() { # manifest NAME: the job, writing to $work/out-NAME
  cat > "$work/$1.yaml" <<EOF
apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {name: bench-$1}
spec:
  source:
    files: {uri: "file://$work/texts", filesPerUnit: 4}
  steps:
    - {op: download, input: uri, output: bytes}
    - {op: document.text, input: bytes, output: text}
    - {op: text.embed, input: text, output: embedding, pool: gpu, model: {arch: bert, uri: "$WEIGHTS"}}
    - {op: select, columns: [uri, embedding]}
  sink:
    parquet: {uri: "file://$work/out-$1"}
  pools:
    gpu: {replicas: {min: 1, max: 3}, gpusPerPod: 0}
EOF
}

declare -A TOPOLOGY=([lower]="cpu=1,gpu=1" [upper]="cpu=1,gpu=3" [autoscaled]="cpu=1..2,gpu=1..3")
RUNS=(lower upper autoscaled)
declare -A WALL SECONDS_USED
for name in "${RUNS[@]}"; do manifest "$name"; done

echo "$TEXTS texts, MiniLM on the gpu pool, one thread per process, $(nproc) cores; $ROUNDS rounds"
for ((round = 1; round <= ROUNDS; round++)); do
  for name in "${RUNS[@]}"; do
    rm -rf "$work/out-$name"
    out="$("$WEIR" run --no-progress --threads 1 --workers "${TOPOLOGY[$name]}" --autoscale-interval 5s \
      "$work/$name.yaml" 2>"$work/$name.log")"
    wall="$(sed -n 's/.* in \([0-9.]*\)s with .*/\1/p' <<<"$out")"
    used="$(sed -n 's/^worker-seconds: \([0-9.]*\).*/\1/p' <<<"$out")"
    grown="$(grep -c 'autoscaler gpu .*(up)' "$work/$name.log" || true)"
    printf 'round %d  %-10s %-18s wall %6.1f s  worker-seconds %6.1f  gpu scale-ups %s\n' \
      "$round" "$name" "${TOPOLOGY[$name]}" "$wall" "$used" "$grown"
    WALL[$name]+="$wall "
    SECONDS_USED[$name]+="$used "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $ROUNDS rounds:"
for name in "${RUNS[@]}"; do
  printf '  %-10s %-18s wall %6.1f s  worker-seconds %6.1f\n' "$name" "${TOPOLOGY[$name]}" \
    "$(median <<<"${WALL[$name]}")" "$(median <<<"${SECONDS_USED[$name]}")"
done
