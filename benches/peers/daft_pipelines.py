"""The four peer pipelines in Daft (0.7.x, native local runner, default parallelism), written the way
Daft's documentation shows them. Each writes Parquet under OUT_DIR with `DataFrame.write_parquet`.

  a  image classification: `daft.from_glob_path` lists the JPEGs, `download` + `decode_image` read
     and decode them (RGB), `crop` (with a per-row bounding-box expression) and `resize` do the centre
     crop and the 224x224 resize, and a class UDF (`@daft.cls` + `@daft.method.batch`, batches of at
     most 16) holds EfficientNet-Lite0 (pytorch_classify.Net, loaded once per instance) and gives the
     top-1 label. Columns: name, label.
  b  image preprocessing: from_glob_path -> download -> decode_image -> resize(224, 224) ->
     encode_image("JPEG"). Columns: name, jpeg.
  c  text embedding: `daft.read_parquet`, then `daft.functions.embed_text` with the "transformers"
     provider (sentence-transformers under the hood) pointed at the local all-MiniLM-L6-v2 folder.
     Columns: id, embedding (fixed-size list of 384 float32).
  d  video frames: from_glob_path lists the clips, `daft.functions.video_frames(video_file(path),
     width=224, height=224, sample_interval_seconds=1.0)` decodes every frame (PyAV) and keeps,
     resized to 224x224, the first frame at or after each whole second, as a list of frames per
     video; `list_count` counts them. Columns: name, frames.

usage: python daft_pipelines.py a PHOTOS OUT_DIR CHECKPOINT LABELS.json
       python daft_pipelines.py b JPEGS OUT_DIR
       python daft_pipelines.py c SENTENCES.parquet OUT_DIR MODEL_DIR
       python daft_pipelines.py d CLIPS OUT_DIR
"""

import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: no Hugging Face Hub look-ups

import daft  # noqa: E402
from daft import DataType, col  # noqa: E402
from daft.functions import (  # noqa: E402
    columns_max, columns_min, crop, decode_image, download, embed_text, encode_image,
    image_height, image_width, list_count, resize, split_part, to_list, video_file, video_frames,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def images(folder):
    """Every *.jpg under folder, decoded to RGB, with its base name."""
    df = daft.from_glob_path(f"{folder}/*.jpg")
    return df.select(split_part(col("path"), "/", -1).alias("name"),
                     decode_image(download(col("path")), mode="RGB").alias("image"))


@daft.cls
class Classifier:
    """EfficientNet-Lite0 (the same network code as pytorch_classify.py), loaded once per instance."""

    def __init__(self, checkpoint, labels):
        import json

        from pytorch_classify import load_net

        self.net = load_net(checkpoint)
        self.labels = json.loads(pathlib.Path(labels).read_text())

    @daft.method.batch(return_dtype=DataType.string(), batch_size=16)
    def __call__(self, image: daft.Series):
        import numpy as np
        import torch

        batch = np.stack(image.to_pylist()).astype(np.float32).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            top = self.net(torch.from_numpy((batch - 127.0) / 128.0)).argmax(1).tolist()
        return [self.labels[t] for t in top]


def pipeline_a(photos, out, checkpoint, labels):
    df = images(photos)
    # The centre crop and the resize are Daft's own image expressions: `crop` takes a per-row
    # (x, y, width, height) list expression built from image_width / image_height, and `resize`
    # is a bilinear (triangle-filter) resize, which matches PIL's BILINEAR to within ~0.13 grey
    # levels on average. Only the scaling to (x - 127) / 128 is left to the UDF, next to the model.
    w, h = image_width(col("image")).cast(DataType.int64()), image_height(col("image")).cast(DataType.int64())
    side = columns_max(columns_min(w, h) * 224 // 256, daft.lit(1))
    bbox = to_list((w - side) // 2, (h - side) // 2, side, side).cast(DataType.fixed_size_list(DataType.uint64(), 4))
    df = df.with_column("image", resize(crop(col("image"), bbox), 224, 224))
    df = df.select("name", Classifier(checkpoint, labels)(col("image")).alias("label"))
    df.write_parquet(out)


def pipeline_b(jpegs, out):
    # encode_image has no quality argument: Daft encodes with the Rust `image` crate's JpegEncoder,
    # whose default quality is 75 (checked: its quantisation tables equal PIL's at quality=75).
    df = images(jpegs)
    df = df.select("name", encode_image(resize(col("image"), 224, 224), "JPEG").alias("jpeg"))
    df.write_parquet(out)


def pipeline_c(sentences, out, model_dir):
    df = daft.read_parquet(sentences)
    # The transformers provider runs SentenceTransformer(model_dir).encode: mean pooling and the
    # model folder's Normalize module, so 384 L2-normalised float32 per text.
    emb = embed_text(col("text"), provider="transformers", model=str(model_dir))
    df = df.select("id", emb.cast(DataType.fixed_size_list(DataType.float32(), 384)).alias("embedding"))
    df.write_parquet(out)


def pipeline_d(clips, out):
    # video_frames decodes every frame and, with sample_interval_seconds=1.0, keeps the first one whose
    # timestamp is >= 0, 1, 2, ... s, resized to 224x224 (PyAV reformat), with its metadata.
    # Not daft.read_video_frames (same sampling, one row per frame): in 0.7.26 on this 2-core machine
    # it hangs as soon as it reads two or more files (its scan tasks wait on Daft's background event
    # loop while that loop is blocked in File.exists); one file at a time works.
    df = daft.from_glob_path(f"{clips}/*.mp4")
    frames = video_frames(video_file(col("path")), width=224, height=224, sample_interval_seconds=1.0)
    df = df.select(split_part(col("path"), "/", -1).alias("name"),
                   list_count(frames).cast(DataType.int64()).alias("frames"))
    df.write_parquet(out)


PIPELINES = {"a": pipeline_a, "b": pipeline_b, "c": pipeline_c, "d": pipeline_d}

if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in PIPELINES:
        sys.exit(__doc__)
    PIPELINES[sys.argv[1]](*sys.argv[2:])
