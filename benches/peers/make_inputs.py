"""The inputs of the four pipelines of benches/peers/run.sh, made once under WORK and reused:
A's 500 photos and B's 2,000 JPEGs come from `weir generate images` (run.sh calls it); this script
makes C's 1,000 sentences (a Parquet file with columns id and text) and D's 20 clips (10 s of
640x360 H.264 at 30 fps, each a different ffmpeg test pattern and motion), deterministically.

usage: python make_inputs.py WORK
"""

import pathlib
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

SUBJECTS = ["A man", "A woman", "The child", "An old dog", "Two cats", "The chef", "A cyclist",
            "The committee", "A small robot", "The orchestra", "My neighbour", "A pilot"]
VERBS = ["is eating", "is painting", "was reading", "will repair", "carefully examined",
         "quietly watched", "is carrying", "photographed", "forgot about", "is cooking"]
OBJECTS = ["a piece of bread", "the old bridge", "a red bicycle", "the evening news",
           "a bowl of soup", "the broken radio", "a mountain of paperwork", "the garden fence",
           "a violin", "the morning train", "a cup of coffee", "the last chapter"]
TAILS = ["", " in the rain", " before sunrise", " with great care", " at the market",
         " while humming a song", " after a long day at work", " on the crowded platform"]

# ffmpeg sources that differ in content and motion, so no two clips decode alike.
PATTERNS = ["testsrc2", "smptebars", "rgbtestsrc", "mandelbrot", "life=ratio=0.4:mold=10",
            "cellauto=rule=110", "testsrc"]


def sentences(count):
    rng = random.Random(21)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
            for _ in range(count)]


def clip(path, index):
    pattern = PATTERNS[index % len(PATTERNS)]
    source = f"{pattern}=size=640x360:rate=30" if "=" not in pattern else f"{pattern}:size=640x360:rate=30"
    hue = f"hue=h={index * 17 % 360}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", "10",
                    "-vf", f"{hue},format=yuv420p", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "60", str(path)], check=True)


def main(work):
    work = pathlib.Path(work)
    text = work / "sentences.parquet"
    if not text.exists():
        rows = sentences(1000)
        table = pa.table({"id": pa.array(range(len(rows)), pa.int64()), "text": rows})
        pq.write_table(table, text)
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        path = clips / f"clip-{i:02}.mp4"
        if not path.exists():
            clip(path, i)


if __name__ == "__main__":
    main(sys.argv[1])
