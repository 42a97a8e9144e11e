"""Where the CPU goes: fetchmany and the uvloop bare pool, each sampled on the same run.

    python bench/profile.py                 # 40,000 requests to nginx at --limit 50
    python bench/profile.py -n 10000 --top 30
    python bench/profile.py --cprofile      # cProfile instead of py-spy

Starts nginx as bench/run.py does, then runs fetchmany (-q, its defaults otherwise)
and ``bench/peers/bare_pool.py`` (uvloop) on the same URLs under ``py-spy record
--rate 250 --format raw`` (non-idle samples only), and prints for each: the top
functions by self samples, the samples by package, and how many samples fall inside
``aiohttp.client.ClientSession._request`` (one aiohttp request, start to headers). The
text goes to bench/out/profile.txt, the raw stacks to bench/out/profile-*.raw.

Where py-spy cannot trace (no ptrace in a sandbox), it says so and falls back to
``python -m cProfile -o`` on the same commands (``python -m fetchmany``): times, not
samples, and coroutine times are per resumption.

(This file shadows the standard library's ``profile`` for scripts run from bench/; it
imports neither ``profile`` nor ``cProfile`` itself, and runs ``-m cProfile`` from the
repository root.)
"""

from __future__ import annotations

import argparse
import collections
import pstats
import re
import shutil
import subprocess
import sys
from pathlib import Path

from run import (
    BARE_POOL,
    CLEAN_ENV,
    OUT,
    PY,
    Nginx,
    ensure_tools,
    fetchmany_cmd,
    url_file,
    warm_bytecode,
)

ROOT = Path(__file__).resolve().parent.parent
REQUEST = "ClientSession._request"
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    local = Path(PY).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def frame_name(frame: str) -> str:
    """``func (file.py:12)`` without its line number, so a function is one row."""
    return _LINE.sub(")", frame)


def package(frame: str) -> str:
    """The top package of a frame's file (``aiohttp``, ``fetchmany``, ``asyncio``), or
    the file itself for a lone module (``ssl.py``, ``bare_pool.py``)."""
    name = frame_name(frame)
    start = name.rfind(" (")
    path = name[start + 2 : -1] if start >= 0 and name.endswith(")") else name
    if path.startswith("<"):
        return path.split(">")[0] + ">"
    return path.split("/")[0]


def summarise_raw(path: Path, top: int) -> list[str]:
    """Self samples per function, samples per package, samples inside _request."""
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = inside = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frame_name(frames[-1])] += count
        packages[package(frames[-1])] += count
        if any(frame.startswith(REQUEST + " ") for frame in frames):
            inside += count
    if not total:
        return ["  no samples"]
    lines = [
        f"  samples: {total:,}; inside {REQUEST}: {inside:,} ({inside / total:.1%})",
        "",
        "  self samples by package:",
        *(f"  {n:8,} {n / total:6.1%}  {name}" for name, n in packages.most_common(12)),
        "",
        f"  top {top} functions by self samples:",
        *(f"  {n:8,} {n / total:6.1%}  {name}" for name, n in own.most_common(top)),
    ]
    return lines


def short_path(file: str) -> str:
    """A file as py-spy names it: from its package down (site-packages, src/, the stdlib)."""
    for marker in (
        "/site-packages/",
        "/src/",
        f"/python{sys.version_info[0]}.{sys.version_info[1]}/",
    ):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    return file


def summarise_cprofile(path: Path, top: int) -> list[str]:
    stats = pstats.Stats(str(path))
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    inside = sum(
        entry[3]
        for (file, _, func), entry in table.items()
        if func == "_request" and file.endswith("aiohttp/client.py")
    )
    ranked = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [
        f"  total own time: {total:.3f} s; cumulative in {REQUEST}: {inside:.3f} s "
        f"({inside / total:.1%})"
        if total
        else "  no time recorded",
        "",
        f"  top {top} functions by own time:",
        *(
            f"  {entry[2]:8.3f} s {entry[2] / total:6.1%}  {func} ({short_path(file)}:{line})"
            for (file, line, func), entry in ranked
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=40_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument(
        "--path", default="/posts", help="nginx path: /posts (default), or /slow (50 ms, as (b))"
    )
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cprofile", action="store_true", help="use cProfile, not py-spy")
    args = parser.parse_args()
    ensure_tools()
    OUT.mkdir(exist_ok=True)
    warm_bytecode()
    limit = str(args.limit)
    # name: (file name, command under py-spy, arguments after python -m cProfile -o FILE)
    runs = {
        "fetchmany": (
            "fetchmany",
            [*fetchmany_cmd(), "-q", "--limit", limit],
            ["-m", "fetchmany", "-q", "--limit", limit],
        ),
        "bare pool (uvloop)": ("bare-pool", [PY, BARE_POOL, limit], [BARE_POOL, limit]),
    }
    spy = None if args.cprofile else py_spy()
    report = [
        f"# Profile: {args.requests:,} requests to nginx {args.path} at --limit {args.limit}",
        "",
    ]
    with Nginx() as nginx:
        n = args.requests
        name = args.path.strip("/").replace("/", "_")
        urls = url_file(f"{name}_{n}", n, lambda i: nginx.url(f"{args.path}?id={i}"))
        for name, (slug, target, cprofile_args) in runs.items():
            print(f"profiling {name} ...", flush=True)
            lines: list[str] | None = None
            if spy is not None:
                raw = OUT / f"profile-{slug}.raw"
                raw.unlink(missing_ok=True)
                command = [spy, "record", "--rate", str(args.rate), "--format", "raw"]
                with urls.open("rb") as stdin:
                    done = subprocess.run(
                        [*command, "-o", str(raw), "--", *target],
                        stdin=stdin,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=CLEAN_ENV,
                        check=False,
                    )
                if done.returncode == 0 and raw.exists() and raw.stat().st_size:
                    header = f"## {name}: py-spy record --rate {args.rate} --format raw"
                    lines = [header, "", *summarise_raw(raw, args.top)]
                else:
                    why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"py-spy could not profile {name} ({why}); using cProfile", flush=True)
                    report += [f"py-spy failed for {name}: {why}", ""]
            if lines is None:
                prof = OUT / f"profile-{slug}.prof"
                with urls.open("rb") as stdin:
                    subprocess.run(
                        [PY, "-m", "cProfile", "-o", str(prof), *cprofile_args],
                        stdin=stdin,
                        stdout=subprocess.DEVNULL,
                        env=CLEAN_ENV,
                        cwd=ROOT,
                        check=False,
                    )
                lines = [f"## {name}: cProfile", "", *summarise_cprofile(prof, args.top)]
            report += [*lines, ""]
    text = "\n".join(report) + "\n"
    (OUT / "profile.txt").write_text(text)
    sys.stdout.write(text)
    print(f"wrote {OUT / 'profile.txt'}")


if __name__ == "__main__":
    main()
