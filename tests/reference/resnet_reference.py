#!/usr/bin/env python3
"""Independent numpy reference for torchvision's ResNet family.

This mirrors ``torchvision.models.resnet`` (resnet18 / resnet34 with
BasicBlock, resnet50 with the v1.5 Bottleneck whose stride sits on the 3x3
conv2) in eval mode, without needing torch. It generates random weights under
the exact torchvision state_dict names, runs a forward pass in float64 and
writes two safetensors files that a Rust test loads to check the candle
implementation:

  OUT_DIR/weights.safetensors   the state_dict (float32, num_batches_tracked int64)
  OUT_DIR/expected.safetensors  "input", "features" (after global avg pool), "logits"

Usage: python resnet_reference.py ARCH OUT_DIR [--size 64] [--classes 10]
                                               [--batch 2] [--seed 0]
"""

import argparse
import json
import os
import struct

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# arch -> (block kind, blocks per stage). Expansion is 1 for basic, 4 for bottleneck.
ARCHS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}
WIDTHS = [64, 128, 256, 512]
BN_EPS = 1e-5


# ---------------------------------------------------------------- weights

def conv_weight(rng, out_c, in_c, k):
    # He init keeps activations O(1) through 50 layers, so the comparison
    # exercises real values rather than numbers that vanish or explode.
    fan_in = in_c * k * k
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), (out_c, in_c, k, k))


def bn_params(rng, prefix, c, sd):
    sd[prefix + ".weight"] = rng.uniform(0.5, 1.5, c)
    sd[prefix + ".bias"] = rng.normal(0.0, 0.1, c)
    sd[prefix + ".running_mean"] = rng.normal(0.0, 0.1, c)
    sd[prefix + ".running_var"] = rng.uniform(0.5, 1.5, c)
    sd[prefix + ".num_batches_tracked"] = np.array(0, dtype=np.int64)


def make_state_dict(arch, classes, rng):
    """Random state_dict with torchvision names; float values are float32."""
    kind, layers = ARCHS[arch]
    expansion = 4 if kind == "bottleneck" else 1
    sd = {}
    sd["conv1.weight"] = conv_weight(rng, 64, 3, 7)
    bn_params(rng, "bn1", 64, sd)
    in_c = 64
    for li, (width, n_blocks) in enumerate(zip(WIDTHS, layers), start=1):
        for bi in range(n_blocks):
            p = f"layer{li}.{bi}"
            stride = 2 if (li > 1 and bi == 0) else 1
            out_c = width * expansion
            if kind == "basic":
                convs = [(in_c, width, 3), (width, width, 3)]
            else:
                convs = [(in_c, width, 1), (width, width, 3), (width, out_c, 1)]
            for ci, (cin, cout, k) in enumerate(convs, start=1):
                sd[f"{p}.conv{ci}.weight"] = conv_weight(rng, cout, cin, k)
                bn_params(rng, f"{p}.bn{ci}", cout, sd)
            # Same rule as torchvision's _make_layer: project the shortcut
            # whenever the spatial size or the channel count changes.
            if stride != 1 or in_c != out_c:
                sd[f"{p}.downsample.0.weight"] = conv_weight(rng, out_c, in_c, 1)
                bn_params(rng, f"{p}.downsample.1", out_c, sd)
            in_c = out_c
    sd["fc.weight"] = rng.normal(0.0, 0.01, (classes, in_c))
    sd["fc.bias"] = rng.normal(0.0, 0.01, classes)
    # Store float32 (what the Rust side loads); the forward pass then upcasts
    # these exact float32 values, so both sides start from identical weights.
    return {k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in sd.items()}


# ---------------------------------------------------------------- ops

def conv2d(x, w, stride=1, pad=0):
    """x [N,C,H,W], w [O,C,kh,kw] -> [N,O,Ho,Wo]; cross-correlation like torch."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # im2col as a zero-copy view: [N,C,H',W',kh,kw]; striding by slicing the
    # window grid gives exactly floor((H+2p-k)/s)+1 output positions.
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # [N,Ho,Wo,O]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def batch_norm(x, sd, prefix):
    # Eval mode: normalise with running statistics, not batch statistics.
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    scale = g / np.sqrt(v + BN_EPS)
    return x * scale[None, :, None, None] + (b - m * scale)[None, :, None, None]


def relu(x):
    return np.maximum(x, 0.0)


def max_pool_3x3_s2_p1(x):
    # torch pads max-pool with -inf, so padding never wins the max.
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    win = sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return win.max(axis=(4, 5))


# ---------------------------------------------------------------- model

def block(x, sd, p, kind, stride):
    if kind == "basic":
        out = relu(batch_norm(conv2d(x, sd[p + ".conv1.weight"], stride, 1), sd, p + ".bn1"))
        out = batch_norm(conv2d(out, sd[p + ".conv2.weight"], 1, 1), sd, p + ".bn2")
    else:
        # v1.5: the 1x1 conv1 keeps stride 1, the 3x3 conv2 carries the stride.
        out = relu(batch_norm(conv2d(x, sd[p + ".conv1.weight"]), sd, p + ".bn1"))
        out = relu(batch_norm(conv2d(out, sd[p + ".conv2.weight"], stride, 1), sd, p + ".bn2"))
        out = batch_norm(conv2d(out, sd[p + ".conv3.weight"]), sd, p + ".bn3")
    if p + ".downsample.0.weight" in sd:
        identity = conv2d(x, sd[p + ".downsample.0.weight"], stride)
        identity = batch_norm(identity, sd, p + ".downsample.1")
    else:
        identity = x
    return relu(out + identity)


def forward(arch, sd32, x):
    """Returns (features [N, C], logits [N, classes]) in float64."""
    kind, layers = ARCHS[arch]
    sd = {k: v.astype(np.float64) for k, v in sd32.items()}
    x = x.astype(np.float64)
    x = relu(batch_norm(conv2d(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
    x = max_pool_3x3_s2_p1(x)
    for li, n_blocks in enumerate(layers, start=1):
        for bi in range(n_blocks):
            stride = 2 if (li > 1 and bi == 0) else 1
            x = block(x, sd, f"layer{li}.{bi}", kind, stride)
    features = x.mean(axis=(2, 3))
    logits = features @ sd["fc.weight"].T + sd["fc.bias"]
    return features, logits


# ---------------------------------------------------------------- safetensors

def save_safetensors(path, tensors):
    """Minimal writer: u64 LE header length, JSON header, raw LE C-order data."""
    dtypes = {"<f4": "F32", "<i8": "I64"}
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        # np.asarray (not ascontiguousarray) so 0-d scalars keep shape [].
        arr = np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
        data = arr.tobytes(order="C")
        header[name] = {"dtype": dtypes[arr.dtype.str], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in blobs:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", choices=sorted(ARCHS))
    ap.add_argument("out_dir")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    sd = make_state_dict(args.arch, args.classes, rng)
    x = rng.normal(0.0, 1.0, (args.batch, 3, args.size, args.size)).astype(np.float32)
    features, logits = forward(args.arch, sd, x)

    os.makedirs(args.out_dir, exist_ok=True)
    save_safetensors(os.path.join(args.out_dir, "weights.safetensors"), sd)
    save_safetensors(os.path.join(args.out_dir, "expected.safetensors"), {
        "input": x,
        "features": features.astype(np.float32),
        "logits": logits.astype(np.float32),
    })


if __name__ == "__main__":
    main()
