#!/usr/bin/env python3
"""Writes PyTorch checkpoints byte-for-byte the way ``torch.save`` does, without torch.

A Rust test uses the files to check ``weir model convert`` on both formats torch produces.
Tensors are pickled (protocol 2) as ``GLOBAL 'torch._utils _rebuild_tensor_v2'`` applied by
REDUCE to ``(storage, storage_offset, size, stride, False, OrderedDict())``; the storage is
never pickled itself but referred to by a persistent id (BINPERSID) whose tuple starts
``('storage', GLOBAL 'torch FloatStorage', key, 'cpu', numel, ...)``. The state dict is a
``collections.OrderedDict`` (GLOBAL + EMPTY_TUPLE + REDUCE, then SETITEMS), carrying the
``_metadata`` attribute ``Module.state_dict()`` attaches (written as BUILD).

Zip format (torch >= 1.6): a ZIP_STORED archive whose records sit at 64-byte aligned offsets
(padded through an "FB" extra field, as torch's PyTorchStreamWriter does): ``<name>/data.pkl``
(the pickle; persistent id ``('storage', type, key, 'cpu', numel)``, keys "0", "1", ... in
first-use order), ``<name>/byteorder`` ("little"), ``<name>/data/<key>`` (the raw
little-endian storage, keys sorted as strings), ``<name>/version`` ("3\\n"). ``<name>`` is the
file name without its extension, as torch uses.

Legacy format (torch < 1.6, or ``_use_new_zipfile_serialization=False``): consecutive pickles
of the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a ``sys_info`` dict, the
object (persistent id ``('storage', type, key, 'cpu', numel, None)``, the key being the
storage's address in decimal) and the sorted list of storage keys; then, for each key in that
order, the element count as a little-endian u64 followed by the raw little-endian elements.

Usage: python torch_checkpoint_writer.py OUT_DIR
writes OUT_DIR/zip.pth, OUT_DIR/legacy.pth (the same state dict), OUT_DIR/wrapped.pth (zip) and
OUT_DIR/wrapped-legacy.pth (``{"state_dict": ..., "epoch": 3, "best_acc1": <f64 tensor>}``) and
OUT_DIR/expected.json (name -> dtype, shape, values of the state dict).
"""

import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
SYS_INFO = dict(protocol_version=PROTOCOL_VERSION, little_endian=True,
                type_sizes=dict(short=2, int=4, long=8))  # what torch writes on Linux
DTYPES = {"F32": ("FloatStorage", "f"), "F64": ("DoubleStorage", "d"), "I64": ("LongStorage", "q")}


def _fake_global(module, name, obj):
    """Makes pickle write `obj` as GLOBAL 'module name' (torch itself is not importable)."""
    obj.__module__, obj.__qualname__, obj.__name__ = module, name, name
    setattr(sys.modules.setdefault(module, types.ModuleType(module)), name, obj)
    return obj


def _rebuild_tensor_v2(*args):
    raise RuntimeError("stand-in for torch._utils._rebuild_tensor_v2; never called")


_fake_global("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2)
STORAGE_TYPES = {d: _fake_global("torch", cls, type(cls, (), {})) for d, (cls, _) in DTYPES.items()}


class Storage:
    def __init__(self, dtype, values):
        self.dtype, self.values = dtype, values

    def raw(self):
        return struct.pack(f"<{len(self.values)}{DTYPES[self.dtype][1]}", *self.values)


class Tensor:
    """A view into a storage, pickled as torch pickles a tensor."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, OrderedDict())
        return _rebuild_tensor_v2, args


class TorchPickler(pickle.Pickler):
    """Refers to storages by persistent id; `keys` maps a storage to its key, in first-use order."""

    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy, self.keys = legacy, {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        key = self.keys.setdefault(id(obj), (self._key(len(self.keys)), obj))[0]
        pid = ("storage", STORAGE_TYPES[obj.dtype], key, "cpu", len(obj.values))
        return pid + (None,) if self.legacy else pid

    def _key(self, index):
        # torch uses str(storage._cdata) in the legacy format: addresses, not in use order.
        return str(94_000_000_000_000 + 4096 * (7 - index)) if self.legacy else str(index)


def contiguous(dtype, shape, values):
    stride = [1] * len(shape)
    for axis in range(len(shape) - 2, -1, -1):
        stride[axis] = stride[axis + 1] * shape[axis + 1]
    return Tensor(Storage(dtype, values), 0, tuple(shape), tuple(stride))


def state_dict():
    """The test state dict, and for each tensor its dtype, shape and logical (C order) values."""
    fc_weight = [[(i * 6 + j) * 0.1 - 1.0 for j in range(6)] for i in range(5)]  # logical [5, 6]
    fc_storage = Storage("F32", [fc_weight[i][j] for j in range(6) for i in range(5)])  # [6, 5]
    bias_storage = Storage("F32", [10.0 * k - 5.0 for k in range(8)])
    tensors = OrderedDict([
        ("conv.weight", contiguous("F32", [4, 3, 3, 3], [k * 0.01 for k in range(108)])),
        ("conv.bias", contiguous("F32", [4], [-1.5, -0.5, 0.5, 1.5])),
        ("fc.weight", Tensor(fc_storage, 0, (5, 6), (1, 5))),  # transpose: not contiguous
        ("fc.bias", Tensor(bias_storage, 3, (5,), (1,))),  # storage_offset 3 in 8 floats
        ("bn.num_batches_tracked", contiguous("I64", [], [7])),
        ("head.weight", contiguous("F64", [2, 2], [1 / 3, -2.5, 1e100, 3.141592653589793])),
    ])
    tensors._metadata = OrderedDict((m, {"version": 1}) for m in ["", "conv", "fc", "bn", "head"])
    expected = {
        "conv.weight": ("F32", [4, 3, 3, 3], [k * 0.01 for k in range(108)]),
        "conv.bias": ("F32", [4], [-1.5, -0.5, 0.5, 1.5]),
        "fc.weight": ("F32", [5, 6], [v for row in fc_weight for v in row]),
        "fc.bias": ("F32", [5], [25.0, 35.0, 45.0, 55.0, 65.0]),
        "bn.num_batches_tracked": ("I64", [], [7]),
        "head.weight": ("F64", [2, 2], [1 / 3, -2.5, 1e100, 3.141592653589793]),
    }
    for name, (dtype, shape, values) in expected.items():  # round to the stored precision
        code = DTYPES[dtype][1]
        values = list(struct.unpack(f"<{len(values)}{code}", struct.pack(f"<{len(values)}{code}", *values)))
        expected[name] = {"dtype": dtype, "shape": shape, "values": values}
    return tensors, expected


def write_zip(path, obj):
    buf = io.BytesIO()
    pickler = TorchPickler(buf, legacy=False)
    pickler.dump(obj)
    storages = sorted(pickler.keys.values())
    records = [("data.pkl", buf.getvalue()), ("byteorder", b"little")]
    records += [(f"data/{key}", storage.raw()) for key, storage in storages] + [("version", b"3\n")]
    archive = os.path.splitext(os.path.basename(path))[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records:
            info = zipfile.ZipInfo(f"{archive}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            start = zf.fp.tell() + 30 + len(info.filename.encode()) + 4  # local header + "FB" field
            info.extra = b"FB" + struct.pack("<H", -start % 64) + b"Z" * (-start % 64)
            zf.writestr(info, data)


def write_legacy(path, obj):
    with open(path, "wb") as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION, SYS_INFO):
            pickle.dump(header, f, protocol=2)
        pickler = TorchPickler(f, legacy=True)
        pickler.dump(obj)
        storages = sorted(pickler.keys.values())
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, storage in storages:
            f.write(struct.pack("<Q", len(storage.values)) + storage.raw())


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tensors, expected = state_dict()
    write_zip(os.path.join(out, "zip.pth"), tensors)
    write_legacy(os.path.join(out, "legacy.pth"), tensors)
    # A training checkpoint: the state dict wrapped, with a tensor beside it whose storage (f64,
    # outside the state dict) the legacy reader must still step over.
    wrapped = {"state_dict": tensors, "epoch": 3, "best_acc1": contiguous("F64", [], [76.1])}
    write_zip(os.path.join(out, "wrapped.pth"), wrapped)
    write_legacy(os.path.join(out, "wrapped-legacy.pth"), wrapped)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
