#!/usr/bin/env bash
# Set-up: installs the system packages Weir builds with (Debian/Ubuntu), builds the release `weir`
# binary into ~/.cargo/bin, and generates the example images under data/images.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_packages build-essential pkg-config ca-certificates curl

if ! command -v cargo >/dev/null 2>&1; then
  echo "==> installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

echo "==> building weir (release)"
cargo install --locked --path worker/cli --target-dir "${CARGO_TARGET_DIR:-target}" --root "$HOME/.cargo"

echo "==> generating example data in data/images"
if [ ! -f data/images/img-00199.jpg ]; then
  "$HOME/.cargo/bin/weir" generate images data/images --count 200 --with-bad-files
fi
echo "done: now run  weir run manifests/examples/images-local.yaml"
