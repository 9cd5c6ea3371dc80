#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/), one file per hostile input
the parsers must refuse cleanly, plus a few well-formed files for the fuzzer to mutate.

Run by hand when a seed is added: `python3 fuzz/make_corpus.py` (the JPEG, BMP, GIF, TIFF and MP4
seeds come from the `ffmpeg` CLI, the rest is written here). The output is committed; CI only
reads it. Regression inputs that fuzzing found are committed beside these as `crash-*` files and
are not written by this script.
"""

import os
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "manifests", "examples")

# The image target reads its first byte as its settings (mode RGB, orientation applied).
IMAGE_SETTINGS = b"\x00"

HEAD = "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata:\n  name: fuzz\n"
SOURCE = '  source:\n    files: {uri: "data/in/", glob: "*.jpg"}\n'
SINK = '  sink:\n    parquet: {uri: "data/out/"}\n'


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def ffmpeg(args, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out" + suffix)
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, out], check=True)
        with open(out, "rb") as f:
            return f.read()


def manifests():
    for name in ("images-local.yaml", "documents.yaml", "video-frames.yaml"):
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
            write("manifest", "example-" + name, f.read())
    steps = "  steps:\n    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n"
    write("manifest", "minimal.yaml", HEAD + "spec:\n" + SOURCE + steps + SINK)
    # 20,000 levels (the reader stops at 64; 100,000 would be a 200 KB seed for the same refusal).
    depth = 20_000
    write("manifest", "nested-20k-flow.yaml", HEAD + "spec:\n  source: " + "[" * depth + "]" * depth + "\n")
    block = "".join("  " * i + "k:\n" for i in range(1, 100))
    write("manifest", "nested-100-block.yaml", HEAD + "spec:\n" + block)
    # 15,000 steps in one list (the reader stops one list at 10,000 entries).
    write("manifest", "steps-15k.yaml", HEAD + "spec:\n" + SOURCE + "  steps: [" + "{}," * 15_000 + "]\n" + SINK)
    write("manifest", "steps-200-block.yaml", HEAD + "spec:\n" + SOURCE + "  steps:\n" + "    - {op: select, columns: [a]}\n" * 200 + SINK)
    write("manifest", "duplicate-keys.yaml", HEAD + "  name: again\nspec:\n" + SOURCE + steps + SINK)
    write("manifest", "duplicate-yaml11-keys.yaml", HEAD + "spec:\n  y: 1\n  true: 2\n" + SOURCE + steps + SINK)
    frames = "  steps:\n    - {op: video.frames, input: uri, output: frame, fps: .nan}\n"
    write("manifest", "fps-nan.yaml", HEAD + "spec:\n" + SOURCE.replace("*.jpg", "*.mp4") + frames + SINK)
    write("manifest", "fps-inf.json", '{"apiVersion": "weir.dev/v1alpha1", "kind": "MultimodalJob", "spec": {"x": -.inf}}')
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    write("manifest", "billion-laughs.yaml", HEAD + "\n".join(laughs) + "\nspec: *a9\n")
    merges = "base: &base {op: select, columns: [a]}\n"
    write("manifest", "yaml11-words.yaml",
          HEAD + merges + "spec:\n" + SOURCE + "  steps:\n    - <<: *base\n      columns: [off, y, 0777, 0x1F, 1_000, ~]\n"
          + "    - {op: !!str select, columns: !!null}\n" + SINK)
    write("manifest", "binary-tag.yaml", HEAD + "spec:\n  x: !!binary aGVsbG8=\n")
    write("manifest", "two-documents.yaml", HEAD + "---\n" + HEAD)
    # Found by fuzzing: a field nulled by a comment is absent to the CEL rules (api.rs,
    # a_null_field_is_absent_to_the_cel_rules).
    write("manifest", "null-files.yaml", HEAD + "spec:\n  source:\n    files: # {uri: data/}\n" + steps + SINK)


def png(width, height, rows, color_type=2):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg_with_size(jpeg, width, height):
    """`jpeg` with its first frame header (SOF0/SOF2) declaring `width` x `height`."""
    at = next(i for i in range(2, len(jpeg)) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def flip(data, every):
    out = bytearray(data)
    for i in range(len(out) // 3, len(out), every):
        out[i] ^= 0x10
    return bytes(out)


def images():
    small_jpg = ffmpeg(["-f", "lavfi", "-i", "testsrc=size=32x24", "-frames:v", "1", "-q:v", "10"], ".jpg")
    gray_jpg = ffmpeg(["-f", "lavfi", "-i", "color=gray:size=640x480", "-frames:v", "1", "-q:v", "31"], ".jpg")
    small_png = png(16, 12, b"".join(b"\x00" + b"".join(bytes((x * 16, y * 20, 128)) for x in range(16)) for y in range(12)))
    seeds = {
        "small.jpg": small_jpg,
        "small.png": small_png,
        "small.bmp": ffmpeg(["-f", "lavfi", "-i", "testsrc=size=8x6", "-frames:v", "1"], ".bmp"),
        "small.gif": ffmpeg(["-f", "lavfi", "-i", "testsrc=size=8x6", "-frames:v", "1"], ".gif"),
        "small.tiff": ffmpeg(["-f", "lavfi", "-i", "testsrc=size=8x6", "-frames:v", "1"], ".tiff"),
        "bomb-50000x50000.png": png(50_000, 50_000, b"\x00" * 64),
        "bomb-50000x50000.jpg": jpeg_with_size(small_jpg, 50_000, 50_000),
        "declares-9000x9000-holds-640x480.jpg": jpeg_with_size(gray_jpg, 9000, 9000),
        "truncated.jpg": small_jpg[: len(small_jpg) * 2 // 3],
        "truncated.png": small_png[: len(small_png) - 20],
        "bit-flipped.jpg": flip(small_jpg, 37),
        "bit-flipped.png": flip(small_png, 11),
        "empty-jpeg-header.jpg": b"\xff\xd8\xff",
    }
    for name, data in seeds.items():
        write("image_header", name, IMAGE_SETTINGS + data)
    # A 64x48 JPEG under the target's 16x16 draft (settings bit 0x40): decoded at 1/2 by DCT scaling.
    drafted = ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", "-q:v", "5"], ".jpg")
    write("image_header", "drafted.jpg", b"\x40" + drafted)


def boxes(*items):
    out = b""
    for kind, body in items:
        out += struct.pack(">I", 8 + len(body)) + kind + body
    return out


def mp4s():
    mp4 = ffmpeg(["-f", "lavfi", "-i", "testsrc=size=32x24:rate=5", "-t", "1", "-c:v", "mpeg4", "-q:v", "31"], ".mp4")
    moov = mp4.index(b"moov") - 4
    write("mp4_boxes", "small.mp4", mp4)
    write("mp4_boxes", "ends-inside-a-box.mp4", mp4[: len(mp4) * 3 // 4])
    write("mp4_boxes", "no-moov.mp4", mp4[:moov])
    ftyp = boxes((b"ftyp", b"isom\x00\x00\x02\x00isomiso2"))
    write("mp4_boxes", "largesize-box.mp4", ftyp + struct.pack(">I4sQ", 1, b"mdat", 24) + b"\x00" * 8 + boxes((b"moov", b"")))
    write("mp4_boxes", "largesize-huge.mp4", ftyp + struct.pack(">I4sQ", 1, b"mdat", 2**64 - 9) + b"\x00" * 8)
    write("mp4_boxes", "largesize-cut.mp4", ftyp + struct.pack(">I4s", 1, b"mdat") + b"\x00" * 4)
    write("mp4_boxes", "size-zero-box.mp4", ftyp + boxes((b"moov", b"")) + struct.pack(">I4s", 0, b"mdat") + b"\x00" * 16)
    write("mp4_boxes", "impossible-size.mov", boxes((b"ftyp", b"qt  \x00\x00\x02\x00")) + struct.pack(">I4s", 4, b"free"))
    write("mp4_boxes", "m4a.m4a", boxes((b"ftyp", b"M4A \x00\x00\x02\x00"), (b"moov", b"\x00" * 8), (b"mdat", b"\x01" * 8)))


def pdf(contents, fonts=True, extra=None):
    """A PDF with one page per content stream (given as `(dictionary entries, data)`), and the
    stream `extra` (the same pair) as its last object when given."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(contents)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(contents)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, (entries, data) in enumerate(contents):
        resources = b"/Resources << /Font << /F1 3 0 R >> >>" if fonts else b""
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] " + resources
                       + f" /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(f"<< {entries} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")
    if extra:
        objects.append(f"<< {extra[0]} /Length {len(extra[1])} >>\nstream\n".encode() + extra[1] + b"\nendstream")
    out = b"%PDF-1.5\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def pdfs():
    text = b"BT /F1 12 Tf 72 720 Td (Hello, fuzzer) Tj 0 -14 Td [(two) -300 (words)] TJ T* (next) ' ET"
    hello = pdf([("", text), ("/Filter /FlateDecode", zlib.compress(text))])
    write("pdf_text", "hello.pdf", hello)
    # 80 MiB of spaces behind two Flate filters: a few hundred bytes that inflate past the 64 MiB page limit.
    bomb = zlib.compress(zlib.compress(b" " * (80 << 20), 9), 9)
    write("pdf_text", "flate-bomb.pdf", pdf([("/Filter [/FlateDecode /FlateDecode]", bomb)]))
    # An object stream lopdf inflates on load, before any page: 20 MiB, past the 16 MiB limit.
    stm = zlib.compress(zlib.compress(b"99 0 " + b" " * (20 << 20), 9), 9)
    objstm = "/Type /ObjStm /N 1 /First 5 /Filter [/FlateDecode /FlateDecode]"
    write("pdf_text", "object-stream-bomb.pdf", pdf([("", text)], extra=(objstm, stm)))
    write("pdf_text", "flate-corrupt.pdf", pdf([("/Filter /FlateDecode", flip(zlib.compress(text * 4), 5))]))
    write("pdf_text", "flate-cut.pdf", pdf([("/Filter /FlateDecode", zlib.compress(text * 4)[:40])]))
    write("pdf_text", "content-unparsable.pdf", pdf([("", b"BT /F1 12 Tf (unclosed string Tj ET [ << /x")]))
    write("pdf_text", "no-fonts.pdf", pdf([("", text)], fonts=False))
    write("pdf_text", "truncated.pdf", hello[: len(hello) // 2])
    write("pdf_text", "bad-xref.pdf", hello.replace(b"startxref\n", b"startxref\n9"))


def htmls():
    write("html_text", "page.html", "<!doctype html><html><head><title>T</title><style>p{}</style></head><body>"
          "<h1>Head</h1><p>One &amp; two&nbsp;&copy; &#233;&#xE9;</p><ul><li>a<li>b</ul>"
          "<table><tr><td>x<td>y</table><pre>  kept\n  lines<br>\n</pre><script>if (a<b) {}</script></body></html>")
    write("html_text", "unclosed-tags.html", "<div><p>text<b>bold<i>both<a href=\"x>y\" title='q")
    write("html_text", "unclosed-comment.html", "before<!-- never closed <p>inside")
    write("html_text", "unclosed-script.html", "<p>a</p><script>var x = '</scr' + 'ipt>';")
    write("html_text", "entities.html", "&amp &#x110000; &#99999999999999999999; &#0; &unknown; &#xD800; &"
          + "a" * 40 + "; &#; &#x; ünï&cödé;")
    write("html_text", "multibyte-near-markup.html", "é<é</é<!é&é;<ß/>€<<<>>>&&&;;")
    write("html_text", "pre-breaks.html", "<pre>" + "<br>\n" * 500 + "</pre>")


if __name__ == "__main__":
    for make in (manifests, images, mp4s, pdfs, htmls):
        make()
    for target in sorted(os.listdir(ROOT)):
        files = [os.path.join(ROOT, target, name) for name in os.listdir(os.path.join(ROOT, target))]
        print(f"{target}: {len(files)} seeds, {sum(map(os.path.getsize, files))} bytes", file=sys.stderr)
