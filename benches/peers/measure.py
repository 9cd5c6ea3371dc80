"""Runs one command and measures the whole process tree it makes: wall time, peak PSS (the sum over
every live process of the tree, sampled every 100 ms from /proc/PID/smaps_rollup, so shared pages
count once and Ray's or Daft's worker processes count with their driver), and CPU seconds (user +
system of every process seen, or the kernel's accounting of reaped children, whichever is larger).
Appends one JSON line to RESULTS and exits with the command's status.

usage: python measure.py RESULTS PIPELINE ENGINE ROUND -- COMMAND [ARG ...]
"""

import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def tree(root):
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children(pid)
    return pids


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def main():
    results, pipeline, engine, round_ = sys.argv[1:5]
    command = sys.argv[sys.argv.index("--") + 1:]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    peak_kib, cpu_seen = 0, {}
    while True:
        pids = tree(process.pid)
        peak_kib = max(peak_kib, sum(pss_kib(p) for p in pids))
        for pid in pids:
            cpu_seen[pid] = max(cpu_seen.get(pid, 0.0), cpu_seconds(pid))
        try:  # Retrying after a timeout loses no output (subprocess's documentation).
            stderr = process.communicate(timeout=0.1)[1]
            break
        except subprocess.TimeoutExpired:
            pass
    wall = time.monotonic() - start
    try:  # Whatever the command left running in its session (a detached Ray daemon) goes too.
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record = {"pipeline": pipeline, "engine": engine, "round": int(round_), "status": process.returncode,
              "wall_s": round(wall, 3), "peak_pss_mib": round(peak_kib / 1024, 1),
              "cpu_s": round(max(reaped, sum(cpu_seen.values())), 2)}
    with open(results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{pipeline} {engine:8} round {round_}: {wall:7.2f} s wall, {record['cpu_s']:7.2f} s CPU, "
          f"peak PSS {record['peak_pss_mib']:7.1f} MiB" + ("" if process.returncode == 0 else f", EXIT {process.returncode}"))
    if process.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
