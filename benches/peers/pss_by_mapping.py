"""Runs one command and prints its peak PSS split by mapping: anonymous memory, the heap, the
binary, and each shared library (sampled every 50 ms from /proc/PID/smaps of the process itself,
not its children). What the README's and docs/design.md's "at the peak, smaps counted" figures
come from.

usage: python pss_by_mapping.py COMMAND [ARG ...]
  e.g. python benches/peers/pss_by_mapping.py target/release/weir run --no-progress /tmp/weir-peers/weir-d.yaml
"""

import collections
import subprocess
import sys
import time


def pss_by_mapping(pid):
    """PSS in KiB per mapping name ('[anon]' for unnamed ones), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            text = f.read()
    except OSError:
        return None
    by_name, name = collections.Counter(), None
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields and fields[0] == "Pss:":
            by_name[name] += int(fields[1])
    return by_name


def main():
    process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
    peak = collections.Counter()
    while process.poll() is None:
        now = pss_by_mapping(process.pid)
        if now is not None and sum(now.values()) > sum(peak.values()):
            peak = now
        time.sleep(0.05)
    libraries = sum(v for k, v in peak.items() if k.startswith("/") and ".so" in k)
    print(f"peak PSS {sum(peak.values()) / 1024:.1f} MiB, of which shared libraries {libraries / 1024:.1f} MiB")
    for name, kib in peak.most_common(15):
        print(f"{kib / 1024:8.1f} MiB  {name}")
    sys.exit(process.returncode)


if __name__ == "__main__":
    main()
