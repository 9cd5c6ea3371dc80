"""Writes the fixtures of worker/models/tests/pil_resize.rs: a 131x97 RGB image (smooth bands plus
deterministic noise, so rounding is exercised) and what Pillow's Image.resize(BILINEAR) makes of
it at 61x47 (down on both axes), 200x150 (up on both) and 131x40 (one axis only).

usage: python pil_resize_fixture.py OUT_DIR     (any Pillow >= 9; 13.0.0 made the committed ones)
"""

import sys
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
y, x = np.mgrid[0:97, 0:131]
rng = np.random.default_rng(21)
bands = np.stack([128 + 100 * np.sin(x / 7.0), 128 + 100 * np.cos(y / 5.0), (x * 2 + y) % 256], axis=-1)
pixels = np.clip(bands + rng.integers(-20, 21, size=bands.shape), 0, 255).astype(np.uint8)
source = Image.fromarray(pixels, "RGB")
source.save(out / "input.png")
for width, height in [(61, 47), (200, 150), (131, 40)]:
    source.resize((width, height), Image.BILINEAR).save(out / f"pil-{width}x{height}.png")
