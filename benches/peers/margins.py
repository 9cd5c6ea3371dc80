"""Why an engine's top-1 labels for pipeline A differ from PyTorch's: for each disagreement, how far
apart PyTorch's two most probable classes were. Disagreements between equally good kernels fall
on near-ties; a disagreement on a confident image would point at a wrong network. When the engine
also wrote its top-k probabilities (Weir's `label_topk`), prints how far each is from PyTorch's
probability of the same class.

usage: python margins.py PHOTOS CHECKPOINT LABELS.json ENGINE_OUT_DIR
"""

import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pytorch_classify  # noqa: E402
from compare import keyed, read  # noqa: E402


def reference(photos, checkpoint, labels):
    """PyTorch's (top-1 label, top-1 probability, top-1 minus top-2 probability, every class's
    probability) per file name."""
    names = json.loads(pathlib.Path(labels).read_text())
    found = {}
    for path, row in pytorch_classify.logits(photos, checkpoint):
        probabilities = torch.softmax(row, 0)
        (p1, p2), (i1, _) = (t.tolist() for t in probabilities.topk(2))
        found[path.name] = (names[i1], p1, p1 - p2, probabilities.numpy())
    return found


def score_differences(ref, table):
    """|engine's probability - PyTorch's| for every class in every row's top-k list; None when the
    engine wrote no top-k list."""
    if "label_topk" not in table.column_names:
        return None
    listed = keyed(table, "name", "label_topk")
    return np.array([abs(e["score"] - ref[name][3][e["index"]]) for name, topk in listed.items() for e in topk])


def main(photos, checkpoint, labels, engine_out):
    ref = reference(photos, checkpoint, labels)
    table = read(engine_out)
    got = keyed(table, "name", "label")
    differ = [name for name, (label, *_) in ref.items() if got.get(name) != label]
    margins = np.array([ref[name][2] for name in differ]) if differ else np.zeros(1)
    every = np.array([margin for _, _, margin, _ in ref.values()])
    print(f"{len(differ)}/{len(ref)} labels differ from PyTorch's; PyTorch's top-1 minus top-2 probability on them: "
          f"median {np.median(margins):.3f}, largest {margins.max():.3f}")
    print(f"over all {len(ref)} images: median top-1 probability {np.median([v[1] for v in ref.values()]):.3f}, "
          f"median margin {np.median(every):.3f}; {100 * (every <= margins.max()).mean():.1f}% have a margin of "
          f"{margins.max():.3f} or less")
    scores = score_differences(ref, table)
    if scores is not None:
        print(f"{len(scores)} top-k probabilities against PyTorch's for the same class: largest difference "
              f"{scores.max():.1e}, mean {scores.mean():.1e}; {100 * (scores <= 1e-3).mean():.1f}% within 1e-3")


if __name__ == "__main__":
    main(*sys.argv[1:5])
