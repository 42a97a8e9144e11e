"""Two fetchmany trees on the same run, interleaved: does a change move the wall?

    git worktree add /tmp/before HEAD~3
    python bench/compare.py --before /tmp/before/src            # 50,000 requests, 5 rounds
    python bench/compare.py --before /tmp/before/src -n 20000 --rounds 9

Each round runs the tree given with ``--before`` (first on PYTHONPATH, so its
``fetchmany`` package is the one imported), this checkout, and the bare uvloop pool,
one after another on the same nginx and URLs as (a) in bench/run.py. Interleaving
makes the machine's drift hit all three alike; the table gives medians of the wall
and of the user and system CPU per request, and each wall over the bare pool's.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from run import BARE_POOL, CLEAN_ENV, PY, Nginx, ensure_tools, fetchmany_cmd, warm_bytecode


def measure(command: list[str], urls: Path, env: dict[str, str], n: int) -> tuple[float, ...]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with urls.open("rb") as stdin:
        subprocess.run(command, stdin=stdin, stdout=subprocess.DEVNULL, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = (after.ru_utime - before.ru_utime) / n * 1e6
    system = (after.ru_stime - before.ru_stime) / n * 1e6
    return wall, user, system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the src folder of the other tree")
    parser.add_argument("-n", type=int, default=50_000, help="requests (default 50,000)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ensure_tools()
    warm_bytecode()
    fetchmany = [*fetchmany_cmd(), "-q", "--limit", "50", "-"]
    contenders = {
        "before": (fetchmany, {**CLEAN_ENV, "PYTHONPATH": args.before}),
        "now": (fetchmany, CLEAN_ENV),
        "bare pool (uvloop)": ([PY, BARE_POOL, "50"], CLEAN_ENV),
    }
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in contenders}
    with Nginx() as nginx, tempfile.TemporaryDirectory() as scratch:
        urls = Path(scratch, "urls.txt")
        urls.write_text("".join(nginx.url(f"/posts?id={i}") + "\n" for i in range(args.n)))
        for _ in range(args.rounds):
            for name, (command, env) in contenders.items():
                results[name].append(measure(command, urls, env, args.n))
    bare = statistics.median(run[0] for run in results["bare pool (uvloop)"])
    print("| | wall | user CPU / request | sys CPU / request | ÷ bare pool |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, runs in results.items():
        wall, user, system = (statistics.median(run[i] for run in runs) for i in range(3))
        print(f"| {name} | {wall:.2f} s | {user:.1f} µs | {system:.1f} µs | {wall / bare:.3f} |")


if __name__ == "__main__":
    main()
