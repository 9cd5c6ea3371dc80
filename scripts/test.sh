#!/usr/bin/env bash
# The test command: formatting, lints, and every test of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# System packages: a C compiler for aws-lc and friends; Python for the S3 test server (moto).
ensure_packages build-essential pkg-config python3 python3-venv

# A real S3-compatible server for the tests: moto, in a virtualenv outside the checkout.
VENV="${WEIR_VENV:-$HOME/.cache/weir/venv}"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "==> installing moto[server] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]>=5,<6"
fi
export WEIR_MOTO_SERVER="$VENV/bin/moto_server"

# Reuse a build directory outside the checkout when there is one (CI clones afresh each time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
mkdir -p "$CARGO_TARGET_DIR"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
