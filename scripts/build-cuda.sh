#!/usr/bin/env bash
# Builds `weir` with the `cuda` feature (candle's CUDA kernels) on Debian bookworm, with the CUDA
# 11.8 toolkit from Debian's non-free component (`nvidia-cuda-toolkit`) and g++-11 as nvcc's host
# compiler (CUDA 11.8 does not accept Debian's default g++-12). Enables contrib/non-free if needed.
# Set CUDA_COMPUTE_CAP for the target GPUs (default 80: A100; 86: A10/L4-class; 90: H100).
# The worker image for GPU pools is built the same way on the CUDA 12 images: see the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
if ! command -v nvcc >/dev/null 2>&1 && ! apt-cache policy nvidia-cuda-toolkit | grep -q 'Candidate: [0-9]'; then
  echo "==> enabling Debian's contrib and non-free components (nvidia-cuda-toolkit lives there)"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
    "${sudo[@]}" tee /etc/apt/sources.list.d/weir-cuda.sources >/dev/null
  "${sudo[@]}" apt-get update -qq
fi
ensure_packages "${BUILD_PACKAGES[@]}" nvidia-cuda-toolkit g++-11

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
echo "==> building weir with --features cuda for compute capability $CUDA_COMPUTE_CAP"
cargo build --release --locked -p weir --features cuda
echo "done: target/release/weir (or \$CARGO_TARGET_DIR/release/weir); \`device: auto\` picks the GPU"
