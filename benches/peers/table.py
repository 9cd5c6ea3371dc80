"""The table run.sh ends with: for each pipeline and engine, the best wall time of the rounds (and
the median), the largest peak PSS of the process tree, the CPU seconds of the best round, and the
agreement with the plain script's output. A round that failed is left out and counted.

usage: python table.py RESULTS.jsonl AGREEMENT.tsv
"""

import collections
import json
import statistics
import sys

PIPELINES = {"a": "A: 500 photos -> EfficientNet-Lite0", "b": "B: 2,000 JPEGs -> 224x224 JPEG",
             "c": "C: 1,000 sentences -> MiniLM", "d": "D: 20 clips -> 1 fps 224x224"}
ENGINES = {"weir": "Weir", "plain": "plain script", "daft": "Daft", "ray": "Ray Data"}


def main(results, agreement):
    runs = collections.defaultdict(list)
    with open(results) as f:
        for line in f:
            record = json.loads(line)
            runs[record["pipeline"], record["engine"]].append(record)
    verdicts = {}
    with open(agreement) as f:
        for line in f:
            pipeline, engine, verdict = line.rstrip("\n").split("\t", 2)
            verdicts[pipeline, engine] = verdict
    print("| pipeline | engine | wall, best (median) | CPU s | peak PSS | output against the plain script |")
    print("|---|---|--:|--:|--:|---|")
    for (pipeline, engine), records in sorted(runs.items(), key=lambda kv: (kv[0][0], list(ENGINES).index(kv[0][1]))):
        good = [r for r in records if r["status"] == 0]
        failed = len(records) - len(good)
        note = f" ({failed} of {len(records)} rounds failed)" if failed else ""
        if not good:
            print(f"| {PIPELINES[pipeline]} | {ENGINES[engine]} | failed{note} | | | |")
            continue
        best = min(good, key=lambda r: r["wall_s"])
        median = statistics.median(r["wall_s"] for r in good)
        peak = max(r["peak_pss_mib"] for r in good)
        verdict = verdicts.get((pipeline, engine), "(reference)" if engine == "plain" else "")
        print(f"| {PIPELINES[pipeline]} | {ENGINES[engine]} | {best['wall_s']:.2f} s ({median:.2f} s){note} "
              f"| {best['cpu_s']:.1f} | {peak:.0f} MiB | {verdict} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
