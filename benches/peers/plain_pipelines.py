"""The four pipelines of benches/peers/run.sh as plain scripts, the way one writes them without an
engine: one process, a loop, PyTorch, PIL, PyAV and sentence-transformers. Their outputs are the
references compare.py holds every engine's to.

usage: python plain_pipelines.py a PHOTOS OUT CHECKPOINT LABELS.json
       python plain_pipelines.py b JPEGS OUT
       python plain_pipelines.py c SENTENCES.parquet OUT MODEL_DIR
       python plain_pipelines.py d CLIPS OUT

Each writes OUT/part-0.parquet: A `name, label`; B `name, jpeg` (224x224, bilinear, quality 75);
C `id, embedding` (384 floats, mean pooled, L2-normalised); D `name, frames` (frames at 1 fps,
each resized to 224x224, counted).
"""

import io
import os
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def write(out, columns):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), out / "part-0.parquet")


def files(folder, suffix):
    return sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() == suffix)


def classify(photos, out, checkpoint, labels):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pytorch_classify

    rows = pytorch_classify.classify(photos, checkpoint, labels)
    write(out, {"name": [name for name, _ in rows], "label": [label for _, label in rows]})


def preprocess(jpegs, out):
    names, encoded = [], []
    for path in files(jpegs, ".jpg"):
        image = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75)
        names.append(path.name)
        encoded.append(buffer.getvalue())
    write(out, {"name": names, "jpeg": pa.array(encoded, pa.binary())})


def embed(sentences, out, model_dir):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    table = pq.read_table(sentences, columns=["id", "text"])
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(table["text"].to_pylist(), batch_size=64, normalize_embeddings=True)
    write(out, {"id": table["id"], "embedding": pa.array(list(vectors), pa.list_(pa.float32()))})


def frames_at_one_fps(path):
    """Frames of the first video stream, the first at or after each whole second, at 224x224."""
    import av

    count, next_second = 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None or frame.time + 1e-6 < next_second:
                continue
            frame.to_image().resize((224, 224), Image.BILINEAR)
            count += 1
            next_second = float(int(frame.time + 1e-6) + 1)
    return count


def frames(clips, out):
    paths = files(clips, ".mp4")
    write(out, {"name": [p.name for p in paths], "frames": pa.array([frames_at_one_fps(p) for p in paths], pa.int64())})


if __name__ == "__main__":
    pipeline, args = sys.argv[1], sys.argv[2:]
    {"a": classify, "b": preprocess, "c": embed, "d": frames}[pipeline](*args)
