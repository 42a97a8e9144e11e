"""Run one command and report its wall time and peak RSS as JSON (like /usr/bin/time -f %M).

    python bench/measure.py --stdin urls.txt --stdout /dev/null -- fetchmany --limit 50

A fresh process per measurement, so RUSAGE_CHILDREN's peak is this command's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdin", default=None)
    parser.add_argument("--stdout", default="/dev/null")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    stdin = open(args.stdin, "rb") if args.stdin else subprocess.DEVNULL  # noqa: SIM115
    with open(args.stdout, "wb") as stdout:
        started = time.perf_counter()
        rc = subprocess.call(command, stdin=stdin, stdout=stdout)
        wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    json.dump(
        {"rc": rc, "wall_s": round(wall, 4), "peak_rss_mib": round(peak_kib / 1024, 1)}, sys.stdout
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
