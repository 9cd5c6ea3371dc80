"""The four pipelines of benches/peers in Ray Data, written the way Ray's documentation shows them,
on a local cluster that `ray.init()` starts with its defaults (its start-up is part of the cost).

A  image classification: `read_images(mode="RGB", include_paths=True)`; a row `map` centre-crops a
   square of side min(w, h) * 224 // 256 and resizes it to 224x224 bilinear with PIL, scaled
   (x - 127) / 128 as pytorch_classify.prepare does; `map_batches` with a callable class (the
   EfficientNet-Lite0 of pytorch_classify.Net, loaded once per actor) in batches of 16 gives the
   top-1 label. Columns name, label.
B  image preprocessing: `read_images(size=(224, 224), mode="RGB", include_paths=True)` (Ray resizes
   at decode time with PIL, bilinear, aspect ratio not kept); a row `map` encodes JPEG quality 75.
   Columns name, jpeg.
C  text embedding: `read_parquet`; `map_batches` with a callable class holding a
   SentenceTransformer (all-MiniLM-L6-v2 from a local folder: mean pooling, L2-normalised).
   Columns id, embedding (list<float32>, 384).
D  video frames: `read_videos(fps=1, resize=(224, 224), include_paths=True)`. Ray 2.60 decodes
   with decord, resizes every frame at decode time and keeps every round(30 / 1) = 30th frame, i.e.
   the frames at t = 0, 1, ..., 9 s of a 30 fps clip; then `groupby("name").count()`.
   Columns name, frames.

Every pipeline ends in `write_parquet(OUT_DIR)`. Callable classes run in an actor pool
(`compute=ray.data.ActorPoolStrategy(size=1)`: 2.60 deprecates `concurrency=` in map/map_batches).
An actor reserves one CPU (and Ray sets its OMP_NUM_THREADS to 1); on a 2-core machine a pool of
two would hold both CPUs and starve the read tasks (the pipeline hangs), so each pool has one.

usage: python ray_pipelines.py a PHOTOS OUT_DIR CHECKPOINT LABELS.json
       python ray_pipelines.py b JPEGS OUT_DIR
       python ray_pipelines.py c SENTENCES.parquet OUT_DIR MODEL_DIR
       python ray_pipelines.py d CLIPS OUT_DIR
"""

import io
import json
import os
import pathlib
import sys

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import ray
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pytorch_classify  # noqa: E402  (the network every engine runs; shipped to workers below)


def name(path):
    return os.path.basename(path)


# A: image classification

def crop_resize(row):
    img = Image.fromarray(row["image"])
    side = max(min(img.size) * 224 // 256, 1)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    pixels = (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) - 127.0) / 128.0
    return {"name": name(row["path"]), "pixels": pixels}


class Classifier:
    def __init__(self, checkpoint, labels):
        self.net = pytorch_classify.load_net(checkpoint)
        self.labels = json.loads(pathlib.Path(labels).read_text())

    def __call__(self, batch):
        import torch
        with torch.inference_mode():
            top = self.net(torch.tensor(batch["pixels"])).argmax(1).tolist()
        return {"name": batch["name"], "label": np.array([self.labels[t] for t in top])}


def classify(photos, out, checkpoint, labels):
    ds = ray.data.read_images(photos, mode="RGB", include_paths=True)
    ds = ds.map(crop_resize)
    ds = ds.map_batches(Classifier, fn_constructor_args=(checkpoint, labels), batch_size=16,
                        compute=ray.data.ActorPoolStrategy(size=1))
    ds.write_parquet(out)


# B: image preprocessing

def encode(row):
    buf = io.BytesIO()
    Image.fromarray(row["image"]).save(buf, format="JPEG", quality=75)
    return {"name": name(row["path"]), "jpeg": buf.getvalue()}


def preprocess(jpegs, out):
    ds = ray.data.read_images(jpegs, size=(224, 224), mode="RGB", include_paths=True)
    ds.map(encode).write_parquet(out)


# C: text embedding

class Embedder:
    def __init__(self, model_dir):
        from sentence_transformers import SentenceTransformer
        self.model = SentenceTransformer(model_dir, device="cpu")

    def __call__(self, batch):
        vectors = self.model.encode(list(batch["text"]), normalize_embeddings=True,
                                    convert_to_numpy=True).astype(np.float32)
        return pa.table({"id": pa.array(batch["id"], pa.int64()),
                         "embedding": pa.array(list(vectors), pa.list_(pa.float32()))})


def embed(sentences, out, model_dir):
    ds = ray.data.read_parquet(sentences)
    ds = ds.map_batches(Embedder, fn_constructor_args=(model_dir,), batch_size=64,
                        compute=ray.data.ActorPoolStrategy(size=1))
    ds.write_parquet(out)


# D: video frames

def frame_row(row):
    assert row["frame"].shape == (224, 224, 3), row["frame"].shape
    return {"name": name(row["path"])}


def frames(clips, out):
    # read_videos (decord) decodes every frame, resized to 224x224 while decoding, and keeps each
    # 30th: frame_index 0, 30, ..., 270 = t 0, 1, ..., 9 s (checked with include_timestamps=True).
    ds = ray.data.read_videos(clips, fps=1, resize=(224, 224), include_paths=True)
    counts = ds.map(frame_row).groupby("name").count().rename_columns({"count()": "frames"})
    counts.write_parquet(out)


PIPELINES = {"a": classify, "b": preprocess, "c": embed, "d": frames}

if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in PIPELINES:
        sys.exit(__doc__)
    pipeline, source, out, *extra = sys.argv[1:]
    ray.init(runtime_env={"py_modules": [pytorch_classify],
                          "env_vars": {"HF_HUB_OFFLINE": "1"}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        PIPELINES[pipeline](os.path.abspath(source), os.path.abspath(out), *extra)
    finally:
        ray.shutdown()
