"""How far an engine's output is from the plain scripts' (plain_pipelines.py), row by row.

usage: python compare.py PIPELINE REFERENCE_DIR ENGINE_DIR

Each reads every Parquet file under its folder. Rows are matched by `name` (Weir writes `uri`: its
base name is used) or, for C, by `id`. Prints one line: the rows matched, and
  A: top-1 agreement;
  B: mean absolute difference of the decoded 224x224 pixels (0-255), mean and worst image;
  C: cosine similarity of the embeddings, mean and lowest;
  D: videos with the reference's frame count (Weir writes a row per frame: they are counted).
Exits 1 when a reference row is missing from the engine's output.
"""

import collections
import io
import pathlib
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def read(folder):
    parts = sorted(pathlib.Path(folder).rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else pa.table({})
    if "uri" in table.column_names and "name" not in table.column_names:
        names = [uri.rsplit("/", 1)[-1] for uri in table["uri"].to_pylist()]
        table = table.append_column("name", pa.array(names))
    return table


def keyed(table, key, value):
    return dict(zip(table[key].to_pylist(), table[value].to_pylist()))


def pixels(jpeg):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32)


def mean_abs_difference(a, b):
    return float(np.abs(a - b).mean()) if a.shape == b.shape else 255.0


def compare(pipeline, reference, engine):
    if pipeline == "a":
        ref, got = keyed(reference, "name", "label"), keyed(engine, "name", "label")
        same = sum(got.get(k) == v for k, v in ref.items())
        return ref, got, f"top-1 agreement {100 * same / max(len(ref), 1):.1f}%"
    if pipeline == "b":
        ref, got = keyed(reference, "name", "jpeg"), keyed(engine, "name", "jpeg")
        diffs = [mean_abs_difference(pixels(got[k]), pixels(v)) for k, v in ref.items() if k in got]
        return ref, got, f"pixels differ by {np.mean(diffs):.2f} on average, {max(diffs):.2f} at worst"
    if pipeline == "c":
        ref, got = keyed(reference, "id", "embedding"), keyed(engine, "id", "embedding")
        sims = []
        for k, v in ref.items():
            if k in got:
                a, b = np.asarray(v, np.float64), np.asarray(got[k], np.float64)
                sims.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        return ref, got, f"cosine similarity {np.mean(sims):.6f} on average, {min(sims):.6f} at lowest"
    ref = keyed(reference, "name", "frames")
    if "frames" in engine.column_names:
        got = keyed(engine, "name", "frames")
    else:
        got = dict(collections.Counter(engine["name"].to_pylist()))
    same = sum(got.get(k) == v for k, v in ref.items())
    return ref, got, f"{same}/{len(ref)} videos with the reference's frame count ({sum(ref.values())} frames)"


def main(pipeline, reference, engine):
    ref, got, verdict = compare(pipeline, read(reference), read(engine))
    missing = [k for k in ref if k not in got]
    print(f"{len(ref) - len(missing)}/{len(ref)} rows; {verdict}")
    if missing:
        print(f"missing: {missing[:5]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
