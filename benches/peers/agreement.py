"""Top-1 agreement of Weir's labels (Parquet under WEIR_OUT, columns uri and label) with a
reference CSV (file name, label). usage: python agreement.py WEIR_OUT REFERENCE.csv"""

import csv
import pathlib
import sys

import pyarrow.parquet as pq

weir = {}
for part in pathlib.Path(sys.argv[1]).glob("*.parquet"):
    table = pq.read_table(part, columns=["uri", "label"]).to_pydict()
    weir.update({uri.rsplit("/", 1)[-1]: label for uri, label in zip(table["uri"], table["label"])})
with open(sys.argv[2], newline="") as f:
    reference = dict(csv.reader(f))
same = sum(weir.get(name) == label for name, label in reference.items())
print(f"top-1 agreement: {same}/{len(reference)} = {100 * same / max(len(reference), 1):.1f}% "
      f"(Weir wrote {len(weir)} rows)")
