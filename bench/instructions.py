"""CPU per request as instructions counted by callgrind: fetchmany and the bare pool.

    python bench/instructions.py                  # 2,000 requests, min of 3 runs each
    python bench/instructions.py -n 4000 --rounds 5 -- --body none
    python bench/instructions.py --before /tmp/before/src   # another tree beside this one

Wall and CPU seconds on this 2-core machine move by 5-10% between runs with nginx on
the same cores; valgrind's callgrind counts the instructions the client process runs
instead, which move by about 1-2% (the event loop's batching still depends on how
fast nginx answers). Each contender runs on the same nginx as bench/run.py's (a),
once with all the URLs and once with one URL; the difference, divided by the
requests, is the instructions one request costs past start-up. The minimum of the
rounds is kept: noise only ever adds work. Extra arguments after ``--`` go to
fetchmany (to measure what an option costs). ``--before SRC`` counts another tree's
fetchmany too (its ``src`` first on PYTHONPATH, as bench/compare.py runs it), in the
same rounds: the A/B of a change to the request path in instructions.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from run import BARE_POOL, CLEAN_ENV, PY, Nginx, ensure_tools, fetchmany_cmd, warm_bytecode

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(command: list[str], stdin: Path, env: dict[str, str] = CLEAN_ENV) -> int:
    with stdin.open("rb") as source:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
            stdin=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=True,
        )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="requests (default 2000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=None, help="the src folder of another tree")
    parser.add_argument("extra", nargs="*", help="arguments for fetchmany, after --")
    args = parser.parse_args()
    ensure_tools()
    warm_bytecode()
    fetchmany = [*fetchmany_cmd(), "-q", "--limit", "50", *args.extra, "-"]
    contenders = {
        "fetchmany": (fetchmany, CLEAN_ENV),
        "bare pool (uvloop)": ([PY, BARE_POOL, "50"], CLEAN_ENV),
    }
    if args.before is not None:
        before = {**CLEAN_ENV, "PYTHONPATH": args.before}
        contenders = {"fetchmany before": (fetchmany, before), **contenders}
    with Nginx() as nginx, tempfile.TemporaryDirectory() as scratch:
        many, one = Path(scratch, "many.txt"), Path(scratch, "one.txt")
        many.write_text("".join(nginx.url(f"/posts?id={i}") + "\n" for i in range(args.n)))
        one.write_text(nginx.url("/posts?id=0") + "\n")
        counts: dict[str, list[tuple[int, int]]] = {name: [] for name in contenders}
        for _ in range(args.rounds):  # interleaved, as drift hits every contender alike
            for name, (command, env) in contenders.items():
                full = instructions(command, many, env)
                counts[name].append((full, instructions(command, one, env)))
        per_request = {}
        for name, runs in counts.items():
            full = min(run[0] for run in runs)
            base = min(run[1] for run in runs)
            per_request[name] = (full - base) / (args.n - 1)
            print(f"{name:20} {per_request[name] / 1000:8.1f}k instructions per request")
    bare = per_request["bare pool (uvloop)"]
    for name in contenders:
        if name.startswith("fetchmany"):
            print(f"{name} / bare pool: {per_request[name] / bare:.3f}")


if __name__ == "__main__":
    main()
