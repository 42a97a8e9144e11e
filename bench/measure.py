"""Run one command; report wall time, CPU time and peak RSS as JSON (like /usr/bin/time).

    python bench/measure.py --stdin urls.txt --stdout /dev/null -- fetchmany --limit 50

A fresh process per measurement, so RUSAGE_CHILDREN's figures are this command's alone:
its CPU and that of every descendant waited for (a -P run's workers), and as peak RSS
the largest peak of any one of those processes, not their sum. The command's stderr is
measure.py's own, so whoever runs measure.py reads it (run.py captures it).

The command runs without PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE, which some
sandboxes set: the first makes every write of a Python peer a system call, the second
makes every start compile an uninstalled package's sources again. A user's shell has
neither, and neither is what the benchmark compares.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

_UNSET = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdin", default=None)
    parser.add_argument("--stdout", default="/dev/null")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    stdin = open(args.stdin, "rb") if args.stdin else subprocess.DEVNULL  # noqa: SIM115
    with open(args.stdout, "wb") as stdout:
        started = time.perf_counter()
        rc = subprocess.call(command, stdin=stdin, stdout=stdout, env=env)
        wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "rc": rc,
        "wall_s": round(wall, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
