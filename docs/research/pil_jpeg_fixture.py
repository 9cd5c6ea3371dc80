"""Writes the fixtures of worker/ops/tests/pil_jpeg.rs: JPEGs encoded by Pillow and the pixels
Pillow decodes from them, which image.decode must reproduce bit for bit.

- odd-420.jpg: 61x47 (sides that are not a multiple of the 16x16 block), 4:2:0, quality 85;
  odd-420.png: Image.open(...).convert("RGB").
- progressive-422.jpg: 90x70, 4:2:2, progressive, quality 70; progressive-422.png likewise.
- draft.jpg: 203x151, 4:2:0, quality 90; draft-50x40.png: Pillow's draft("RGB", (50, 40)) decode
  (a 1/2 DCT scaling: 102x76).
- cmyk.jpg: 24x16, CMYK (libjpeg-turbo cannot turn it into RGB; the image crate decodes it);
  cmyk.png: Pillow's convert("RGB") of it.

usage: python pil_jpeg_fixture.py OUT_DIR     (Pillow 13.0.0, libjpeg-turbo 3.2.0 made the committed ones)
"""

import sys
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)


def photo(width, height):
    y, x = np.mgrid[0:height, 0:width]
    bands = np.stack([128 + 100 * np.sin(x / 6.0), 128 + 90 * np.cos(y / 4.0), (x * 3 + y * 2) % 256], axis=-1)
    return Image.fromarray(np.clip(bands + rng.integers(-25, 26, size=bands.shape), 0, 255).astype(np.uint8), "RGB")


photo(61, 47).save(out / "odd-420.jpg", quality=85, subsampling=2)
photo(90, 70).save(out / "progressive-422.jpg", quality=70, subsampling=1, progressive=True)
photo(203, 151).save(out / "draft.jpg", quality=90, subsampling=2)
photo(24, 16).convert("CMYK").save(out / "cmyk.jpg", quality=90)
for name in ["odd-420", "progressive-422", "cmyk"]:
    Image.open(out / f"{name}.jpg").convert("RGB").save(out / f"{name}.png")
draft = Image.open(out / "draft.jpg")
draft.draft("RGB", (50, 40))
draft.convert("RGB").save(out / "draft-50x40.png")
print({p.name: Image.open(p).size for p in sorted(out.iterdir())})
