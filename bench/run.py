"""fetchmany against its peers, side by side, in one run. Not part of the test suite.

    python bench/run.py                 # everything, 3 interleaved rounds (well over an hour)
    python bench/run.py --quick         # smaller inputs, 1 round: a smoke test of the bench
    python bench/run.py --only a,e      # some scenarios (a, x, b, c, d, e, f, g, h, i)

Sets up what it needs on a fresh Debian machine (nginx with the echo module, curl;
apt-get as root), starts nginx on 127.0.0.1 from bench/nginx.conf.template and, for (f)
and (g), bench/fault_server.py, and stops them at the end. Every measurement is a fresh
process under bench/measure.py (wall time, CPU time, peak RSS). Runs are interleaved
(A B C A B C ...) so drift on a noisy machine hits every contender alike; medians,
ratios and a Targets table go to bench/RESULTS.md (bench/out/RESULTS-quick.md with
--quick, so a smoke test never replaces real figures) with the machine description and
the command line. bench/README.md lists the scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import http.client
import importlib.util
import io
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY = sys.executable
MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
BARE_POOL = str(HERE / "peers/bare_pool.py")
GATHER = str(HERE / "peers/gather_recipe.py")
# What measure.py also drops for the commands it runs (see there): for the commands this
# file starts itself.
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")
}


def fetchmany_cmd() -> list[str]:
    script = Path(PY).parent / "fetchmany"
    return [str(script)] if script.exists() else [PY, "-m", "fetchmany"]


# ---------------------------------------------------------------- set-up


def ensure_tools() -> None:
    missing = [p for p in ("nginx", "curl") if shutil.which(p) is None]
    if missing or not Path(MODULE).exists():
        if os.geteuid() != 0:
            sys.exit("bench: needs nginx, libnginx-mod-http-echo and curl (run as root to install)")
        print("bench: installing nginx, libnginx-mod-http-echo, curl", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx", "libnginx-mod-http-echo", "curl"],
            check=True,
            env=env,
        )


def warm_bytecode() -> None:
    """Compile fetchmany's modules once, so no measured run pays for it (an editable
    install's sources are otherwise compiled by the first run that imports them)."""
    spec = importlib.util.find_spec("fetchmany")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            subprocess.run([PY, "-m", "compileall", "-q", location], check=False, env=CLEAN_ENV)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    def __init__(self) -> None:
        self.prefix = OUT / "nginx"
        self.port = free_port()

    def __enter__(self) -> Nginx:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = (HERE / "nginx.conf.template").read_text()
        conf = conf.replace("@PREFIX@", str(self.prefix)).replace("@PORT@", str(self.port))
        conf = conf.replace("@MODULES@", f"load_module {MODULE};")
        (self.prefix / "nginx.conf").write_text(conf)
        subprocess.run(
            ["nginx", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
             "-e", str(self.prefix / "error.log")],
            check=True,
        )  # fmt: skip
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc: object) -> None:
        pid_file = self.prefix / "nginx.pid"
        if pid_file.exists():
            subprocess.run(
                ["nginx", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                 "-s", "stop"],
                check=False,
            )  # fmt: skip

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def url_file(name: str, count: int, make: Callable[[int], str]) -> Path:
    """A file of ``count`` URLs, reused only if it was made for the same server address."""
    first = make(0)
    path = OUT / f"{name}.txt"
    with path.open() if path.exists() else open(os.devnull) as existing:
        same = existing.readline().strip() == first
    if not same or sum(1 for _ in path.open()) != count:
        with path.open("w") as f:
            for i in range(count):
                f.write(make(i) + "\n")
    return path


def curl_config(urls: Path) -> Path:
    path = urls.with_suffix(".curl")
    with urls.open() as src, path.open("w") as dst:
        for line in src:
            dst.write(f'url = "{line.strip()}"\noutput = "/dev/null"\n')
    return path


class FaultServer:
    """bench/fault_server.py in a process of its own (see there for its paths)."""

    def __enter__(self) -> FaultServer:
        self.proc = subprocess.Popen(
            [PY, str(HERE / "fault_server.py"), "--max-seconds", "14400"],
            stdout=subprocess.PIPE,
            text=True,
            env=CLEAN_ENV,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line[:1] != ["ready"]:
            self.proc.kill()
            raise RuntimeError("fault server did not start")
        self.port = int(line[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            return conn.getresponse().read()
        finally:
            conn.close()

    def reset(self) -> None:
        """Forget which /flaky ids were answered, so each run sees its 503s."""
        self.get("/__reset")

    def cpu(self) -> float:
        """The server's CPU seconds so far (user + sys)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- measuring


@dataclass
class Sample:
    wall: float
    cpu: float
    rss: float
    rc: int
    stderr: str = ""
    """What the command wrote on stderr (measure.py passes it through; see ``measure``)."""


@dataclass
class Contender:
    name: str
    command: list[str]
    stdin: Path | None
    requests: int | None = None
    """Requests the run makes, for the CPU µs per request column (None: not shown)."""
    stdout: Path | None = None
    """Where the command's output goes (None: /dev/null)."""
    before: Callable[[], None] | None = None
    """Called before each measured run (resets a server's state)."""
    check: Callable[[Path], str | None] | None = None
    """Called on ``stdout`` after each run: None when the output is right, else why not."""
    env: dict[str, str] | None = None
    """Variables added to the command's environment (e.g. FETCHMANY_DEBUG=1)."""
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def peak(self) -> float:
        return max(s.rss for s in self.samples)


def measure(contender: Contender) -> Sample:
    args = [PY, str(HERE / "measure.py")]
    if contender.stdin is not None:
        args += ["--stdin", str(contender.stdin)]
    if contender.stdout is not None:
        args += ["--stdout", str(contender.stdout)]
    env = {**os.environ, **contender.env} if contender.env else None
    # The command inherits measure.py's stderr, captured here: that is how a contender's
    # stderr (FETCHMANY_DEBUG's line, an error) reaches the harness.
    out = subprocess.run([*args, "--", *contender.command], capture_output=True, text=True, env=env)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Sample(data["wall_s"], data["cpu_s"], data["peak_rss_mib"], data["rc"], out.stderr)


def interleave(contenders: list[Contender], rounds: int, label: str) -> None:
    for r in range(rounds):
        for c in contenders:
            if c.before is not None:
                c.before()
            sample = measure(c)
            c.samples.append(sample)
            print(
                f"  [{label} {r + 1}/{rounds}] {c.name:28s} wall {sample.wall:8.3f}s "
                f"cpu {sample.cpu:8.3f}s rss {sample.rss:7.1f} MiB rc {sample.rc}",
                flush=True,
            )
            if sample.rc != 0 and sample.stderr.strip():
                print(f"    stderr: {sample.stderr.strip().splitlines()[-1]}", flush=True)
            if c.check is not None and c.stdout is not None:
                problem = c.check(c.stdout)
                if problem is not None:
                    c.failures.append(problem)
                    print(f"  FAILED output check, {c.name}: {problem}", flush=True)


def cpu_per_request(c: Contender) -> str:
    """(user + sys) ÷ requests, in µs, start-up included; a dash when not a request run."""
    if not c.requests:
        return "—"
    return f"{c.median('cpu') / c.requests * 1e6:.0f} µs"


def table(contenders: list[Contender], base: str, per_request: bool = False) -> list[str]:
    ref = next(c for c in contenders if c.name == base)
    extra = " CPU µs / request |" if per_request else ""
    rows = [
        f"| contender | wall (median) | CPU (median) |{extra} peak RSS | wall ÷ {base} | runs |",
        "| --- | ---: | ---: |" + (" ---: |" if per_request else "") + " ---: | ---: | ---: |",
    ]
    for c in contenders:
        ratio = c.median("wall") / ref.median("wall")
        cell = f" {cpu_per_request(c)} |" if per_request else ""
        rows.append(
            f"| {c.name} | {c.median('wall'):.3f} s | {c.median('cpu'):.3f} s |{cell} "
            f"{c.peak():.1f} MiB | {ratio:.3f} | {len(c.samples)} |"
        )
    return rows


# ---------------------------------------------------------------- first record


class FirstResponseServer:
    """A tiny keep-alive HTTP server in a thread that notes when it sends its first
    response, so the time to the first record on stdout can be measured from it."""

    BODY = b'{"id":1,"title":"first"}'

    def __init__(self) -> None:
        self.port = free_port()
        self.first_sent: float | None = None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.ready.set()
        async with server:
            await server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(self.BODY)).encode()
            + b"\r\n\r\n"
            + self.BODY
        )
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(response)
                if self.first_sent is None:
                    self.first_sent = time.monotonic()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def reset(self) -> None:
        self.first_sent = None


def first_record_delay(command: list[str], urls: Path, server: FirstResponseServer) -> float:
    """Seconds from the server's first response to the first line on the command's stdout."""
    server.reset()
    with urls.open("rb") as stdin:
        proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, env=CLEAN_ENV)
        assert proc.stdout is not None
        proc.stdout.readline()
        seen = time.monotonic()
        proc.stdout.read()
        proc.wait()
    assert server.first_sent is not None
    return seen - server.first_sent


# ---------------------------------------------------------------- scenarios


def scenario_a(nginx: Nginx, n: int, rounds: int, report: list[str]) -> dict[str, float]:
    urls = url_file(f"posts_{n}", n, lambda i: nginx.url(f"/posts?id={i}"))
    cfg = curl_config(urls)
    contenders = [
        Contender("fetchmany", [*fetchmany_cmd(), "-q", "--limit", "50"], urls, n),
        Contender("bare pool (uvloop)", [PY, BARE_POOL, "50"], urls, n),
        Contender("bare pool (asyncio)", [PY, BARE_POOL, "50", "--asyncio"], urls, n),
        Contender("gather recipe", [PY, GATHER, "50"], urls, n),
        Contender("curl -Z", ["curl", "-s", "-Z", "--parallel-max", "50", "-K", str(cfg)], None, n),
    ]
    print(f"(a) CPU-bound: {n} requests to nginx, limit 50", flush=True)
    interleave(contenders, rounds, "a")
    fm, bare, bare_asyncio, gather, curl = (c.median("wall") for c in contenders)
    report += [
        f"## (a) CPU-bound: {n:,} requests to nginx at --limit 50, output to /dev/null",
        "",
        "fetchmany runs with its defaults (JSON bodies parsed, ordered output, uvloop). The",
        "bare pool does the same work with nothing else (lazy stdin, N workers, a record per",
        "response with the JSON body parsed by orjson, ordered JSON Lines by orjson), on",
        "uvloop and on asyncio's loop; the gather recipe is plain asyncio, every task up",
        "front, printed at the end. CPU µs / request is (user + sys) ÷ requests, start-up",
        "included.",
        "",
        *table(contenders, "bare pool (uvloop)", per_request=True),
        "",
        f"- fetchmany ÷ bare pool (uvloop): **{fm / bare:.3f}** (target ≤ 1.05)",
        f"- fetchmany ÷ gather recipe: **{fm / gather:.3f}** (target ≤ 0.87)",
        f"- bare pool (asyncio) ÷ bare pool (uvloop): {bare_asyncio / bare:.3f} (the loop's share)",
        f"- fetchmany ÷ curl -Z: **{fm / curl:.3f}**",
        "",
    ]
    return {"a_vs_bare": fm / bare, "a_vs_gather": fm / gather, "a_vs_curl": fm / curl}


def scenario_xargs(nginx: Nginx, rounds: int, report: list[str]) -> None:
    n = 2000
    urls = url_file(f"posts_{n}", n, lambda i: nginx.url(f"/posts?id={i}"))
    contenders = [
        Contender("fetchmany", [*fetchmany_cmd(), "-q", "--limit", "50"], urls),
        Contender(
            "xargs -P 50 curl",
            ["xargs", "-P", "50", "-n", "1", "curl", "-s", "-o", "/dev/null"],
            urls,
        ),
    ]
    print(f"(a') {n} requests: fetchmany vs xargs -P 50 curl", flush=True)
    interleave(contenders, rounds, "xargs")
    report += [
        f"## (a') {n:,} requests: xargs -P 50 curl (one curl process per URL)",
        "",
        *table(contenders, "fetchmany"),
        "",
    ]


def scenario_b(nginx: Nginx, rounds: int, report: list[str]) -> dict[str, float]:
    n = 2000
    urls = url_file(f"slow_{n}", n, lambda i: nginx.url(f"/slow?id={i}"))
    empty = OUT / "empty.txt"
    empty.write_text("")
    cfg = curl_config(urls)
    contenders = [
        Contender("fetchmany", [*fetchmany_cmd(), "-q", "--limit", "100"], urls, n),
        Contender(
            "fetchmany start-up (empty input)", [*fetchmany_cmd(), "-q", "--limit", "100"], empty
        ),
        Contender("bare pool (uvloop)", [PY, BARE_POOL, "100"], urls, n),
        Contender("bare pool (asyncio)", [PY, BARE_POOL, "100", "--asyncio"], urls, n),
        Contender("gather recipe", [PY, GATHER, "100"], urls, n),
        Contender(
            "curl -Z", ["curl", "-s", "-Z", "--parallel-max", "100", "-K", str(cfg)], None, n
        ),
    ]
    print(f"(b) latency-bound: {n} requests to a 50 ms endpoint, limit 100", flush=True)
    interleave(contenders, rounds, "b")
    ideal = n / 100 * 0.05
    startup = contenders[1].median("wall")
    efficiency = ideal / (contenders[0].median("wall") - startup)
    report += [
        f"## (b) latency-bound: {n:,} requests to a 50 ms endpoint at --limit 100",
        "",
        f"Ideal: {n} / 100 × 50 ms = {ideal:.2f} s. The start-up row is the same command on",
        "an empty input.",
        "",
        *table(contenders, "fetchmany", per_request=True),
        "",
        f"- fetchmany efficiency = ideal ÷ (wall − start-up) = {ideal:.2f} ÷ "
        f"({contenders[0].median('wall'):.3f} − {startup:.3f}) = **{efficiency:.3f}** "
        "(target ≥ 0.95)",
        "",
    ]
    return {"b_efficiency": efficiency}


def scenario_c(
    nginx: Nginx, small: int, big: int, rounds: int, report: list[str]
) -> dict[str, float]:
    urls_small = url_file(f"posts_{small}", small, lambda i: nginx.url(f"/posts?id={i}"))
    urls_big = url_file(f"posts_{big}", big, lambda i: nginx.url(f"/posts?id={i}"))
    contenders = [
        Contender(f"fetchmany {small:,}", [*fetchmany_cmd(), "-q", "--limit", "50"], urls_small),
        Contender(f"fetchmany {big:,}", [*fetchmany_cmd(), "-q", "--limit", "50"], urls_big),
        Contender(f"gather recipe {small:,}", [PY, GATHER, "50"], urls_small),
        Contender(f"gather recipe {big:,}", [PY, GATHER, "50"], urls_big),
    ]
    print(f"(c) memory: {small} vs {big} inputs", flush=True)
    interleave(contenders, rounds, "c")
    fm_growth = contenders[1].peak() / contenders[0].peak()
    gather_growth = contenders[3].peak() / contenders[2].peak()
    report += [
        f"## (c) memory: peak RSS at {small:,} vs {big:,} inputs (--limit 50)",
        "",
        *table(contenders, f"fetchmany {small:,}"),
        "",
        f"- fetchmany peak RSS {big:,} ÷ {small:,}: **{fm_growth:.3f}** "
        f"({contenders[1].peak():.1f} MiB; targets ≤ 1.15 and < 80 MiB)",
        f"- gather recipe peak RSS {big:,} ÷ {small:,}: {gather_growth:.2f} "
        f"({contenders[3].peak():.1f} MiB)",
        "",
    ]
    return {"c_growth": fm_growth, "c_peak": contenders[1].peak()}


def scenario_d(rounds: int, report: list[str]) -> dict[str, float]:
    server = FirstResponseServer()
    n = 10_000
    urls = url_file(f"first_{server.port}", n, lambda i: f"http://127.0.0.1:{server.port}/p?id={i}")
    commands = {
        "fetchmany (ordered)": [*fetchmany_cmd(), "-q", "--limit", "50"],
        "bare pool (uvloop)": [PY, BARE_POOL, "50"],
        "gather recipe": [PY, GATHER, "50"],
    }
    delays: dict[str, list[float]] = {name: [] for name in commands}
    print("(d) time to first record", flush=True)
    for r in range(rounds):
        for name, command in commands.items():
            delay = first_record_delay(command, urls, server)
            delays[name].append(delay)
            print(f"  [d {r + 1}/{rounds}] {name:28s} {delay * 1000:9.1f} ms", flush=True)
    report += [
        f"## (d) time to first record: first response → first line on stdout ({n:,} inputs)",
        "",
        "| contender | median | runs |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {statistics.median(v) * 1000:.1f} ms | {len(v)} |"
            for name, v in delays.items()
        ),
        "",
        "The bare pool writes through its own 8 KB buffer (its first line appears once 8 KB",
        "of records have piled up); the gather recipe prints everything at the end.",
        "",
    ]
    return {"d_ms": statistics.median(delays["fetchmany (ordered)"]) * 1000}


def scenario_e(nginx: Nginx, rounds: int, report: list[str]) -> dict[str, float]:
    one = OUT / "one_url.txt"
    one.write_text(nginx.url("/posts?id=1") + "\n")
    empty = OUT / "empty.txt"
    empty.write_text("")
    contenders = [
        Contender("fetchmany one URL, -q", [*fetchmany_cmd(), "-q"], one),
        Contender("fetchmany empty input", [*fetchmany_cmd(), "-q"], empty),
        Contender("fetchmany --version", [*fetchmany_cmd(), "--version"], None),
        Contender("fetchmany --help", [*fetchmany_cmd(), "--help"], None),
        Contender("python -c pass", [PY, "-c", "pass"], None),
    ]
    print("(e) start-up", flush=True)
    interleave(contenders, rounds * 5, "e")
    report += [
        "## (e) start-up",
        "",
        "End to end, process start to exit: one URL (nginx's small JSON document) read from",
        "stdin and its record written; an empty stdin (imports, set-up and tear-down with no",
        "request); `--version` and `--help`; the interpreter alone.",
        "",
        *table(contenders, "python -c pass"),
        "",
    ]
    ms = [c.median("wall") * 1000 for c in contenders]
    return {"e_one_url_ms": ms[0], "e_empty_ms": ms[1], "e_version_ms": ms[2], "e_help_ms": ms[3]}


# (f): (tail fraction, seconds). Around the tail, every shape also has 1% resets, 1%
# answering 503 once, 0.5% 404s and a few lines that are no URL at all.
TAIL_SHAPES: tuple[tuple[float, float], ...] = ((0.005, 1.5), (0.01, 1.0), (0.001, 5.0))
INVALID_LINES = ("not a url", "ftp://127.0.0.1/file", "http:///no-host")


def shape_name(tail: float, delay: float) -> str:
    return f"{tail * 100:g}% × {delay:g} s"


def fault_kinds(n: int, tail: float, seed: str) -> list[str]:
    """What each input line asks the fault server for, drawn with a fixed seed."""
    rng = random.Random(seed)
    kinds = []
    for _ in range(n):
        r = rng.random()
        if r < tail:
            kinds.append("tail")
        elif r < tail + 0.01:
            kinds.append("reset")
        elif r < tail + 0.02:
            kinds.append("flaky")
        elif r < tail + 0.025:
            kinds.append("missing")
        else:
            kinds.append("ok")
    for j in range(len(INVALID_LINES)):
        kinds[(j + 1) * n // (len(INVALID_LINES) + 1)] = "invalid"
    return kinds


def fault_line(server: FaultServer, kinds: list[str], i: int, delay: float) -> str:
    kind = kinds[i]
    if kind == "invalid":
        return INVALID_LINES[kinds[:i].count("invalid")]
    query = f"id={i}&d={delay:g}" if kind == "tail" else f"id={i}"
    return server.url(f"/{kind}?{query}")


def _served(record: dict[str, Any]) -> bool:
    return record.get("ok") is True and record.get("status") == 200


EXPECTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "ok": _served,
    "tail": _served,
    "flaky": lambda r: _served(r) and r.get("attempts", 0) >= 2,
    "missing": lambda r: r.get("ok") is False and r.get("status") == 404,
    "reset": lambda r: r.get("ok") is False and r.get("error") is not None,
    "invalid": lambda r: (
        r.get("ok") is False and (r.get("error") or {}).get("kind") == "invalid_url"
    ),
}


def record_check(kinds: list[str], ordered: bool) -> Callable[[Path], str | None]:
    """Exactly one record per input line (in index order when ``ordered``), each with the
    outcome its line asked for; None when so, else what is wrong."""
    n = len(kinds)

    def check(path: Path) -> str | None:
        indexes: list[object] = []
        wrong: collections.Counter[str] = collections.Counter()
        not_json = 0
        with path.open("rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    not_json += 1
                    continue
                index = record.get("index") if isinstance(record, dict) else None
                indexes.append(index)
                if isinstance(index, int) and 0 <= index < n and not EXPECTED[kinds[index]](record):
                    wrong[kinds[index]] += 1
        problems = []
        if not_json:
            problems.append(f"{not_json} output lines are not JSON")
        if len(indexes) != n:
            problems.append(f"{len(indexes)} records for {n} input lines")
        if ordered:
            first = next((pos for pos, index in enumerate(indexes) if index != pos), None)
            if first is not None:
                problems.append(f"record {first} has index {indexes[first]!r}, not {first}")
        else:
            seen = collections.Counter(indexes)
            lost = sum(1 for i in range(n) if i not in seen)
            repeated = sum(count - 1 for count in seen.values() if count > 1)
            if lost or repeated:
                problems.append(f"{lost} indexes without a record, {repeated} repeated")
        if wrong:
            outcome = ", ".join(f"{count} {kind}" for kind, count in sorted(wrong.items()))
            problems.append(f"unexpected outcome for {outcome}")
        return "; ".join(problems) or None

    return check


def scenario_f(server: FaultServer, n: int, rounds: int, report: list[str]) -> dict[str, float]:
    print(f"(f) latency tail: {n} requests to the fault server, limit 50", flush=True)
    rows: list[str] = []
    mixes: list[str] = []
    results: dict[str, float] = {}
    failures: list[str] = []
    for tail, delay in TAIL_SHAPES:
        shape = shape_name(tail, delay)
        kinds = fault_kinds(n, tail, f"{n}/{tail}/{delay}")
        lines = [fault_line(server, kinds, i, delay) for i in range(n)]
        urls = url_file(f"fault_{n}_{tail:g}x{delay:g}", n, lines.__getitem__)
        command = [*fetchmany_cmd(), "-q", "--limit", "50"]
        ordered, unordered = contenders = [
            Contender(
                f"ordered, {shape}", command, urls, n, OUT / "f_ordered.jsonl",
                server.reset, record_check(kinds, ordered=True),
            ),
            Contender(
                f"--unordered, {shape}", [*command, "--unordered"], urls, n,
                OUT / "f_unordered.jsonl", server.reset, record_check(kinds, ordered=False),
            ),
        ]  # fmt: skip
        cpu_before = server.cpu()
        interleave(contenders, rounds, "f")
        server_cpu = (server.cpu() - cpu_before) / (len(contenders) * rounds)
        ratio = ordered.median("wall") / unordered.median("wall")
        checked = [f"{c.name.split(',')[0]}: {f}" for c in contenders for f in c.failures]
        failures += [f"{shape}, {f}" for f in checked]
        rows.append(
            f"| {shape} | {ordered.median('wall'):.3f} s | {unordered.median('wall'):.3f} s | "
            f"**{ratio:.3f}** | {cpu_per_request(ordered)} | {cpu_per_request(unordered)} | "
            f"{ordered.peak():.1f} MiB | {unordered.peak():.1f} MiB | {server_cpu:.2f} s | "
            f"{'ok' if not checked else '**FAILED**'} |"
        )
        counts = collections.Counter(kinds)
        mixes.append(
            f"- {shape}: "
            + ", ".join(f"{counts[k]:,} {k}" for k in ("ok", "tail", "reset", "flaky", "missing"))
            + f", {counts['invalid']} invalid"
        )
        results[f"f_ratio {shape}"] = ratio
        results[f"f_check {shape}"] = 0.0 if checked else 1.0
        results[f"f_rss {shape}"] = ordered.peak()
    report += [
        f"## (f) latency tail: {n:,} requests at --limit 50, ordered (default) vs --unordered",
        "",
        "bench/fault_server.py answers by path: most lines get ~250 B of JSON at once; a",
        "fraction (the tail) gets it after a delay; 1% have the connection reset (retried,",
        "then a connect error), 1% get a 503 the first time (retried, then 200), 0.5% a 404,",
        "and three lines are no URL. Lines per shape:",
        "",
        *mixes,
        "",
        "Every run's output is checked: one record per input line, in index order for the",
        "ordered run (each index once for --unordered), each with the outcome its line asked",
        "for. Server CPU is the fault server's per run.",
        "",
        "| tail shape | ordered wall | --unordered wall | ordered ÷ unordered | "
        "ordered CPU / request | --unordered CPU / request | ordered peak RSS | "
        "--unordered peak RSS | server CPU | output check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
        f"Target: ordered ÷ unordered ≤ 1.1 for every shape ({rounds} round(s), medians).",
        "",
    ]
    if failures:
        report += ["Output check failures:", "", *(f"- {f}" for f in failures), ""]
    return results


def scenario_g(
    server: FaultServer, big: int, size: int, head: float, rounds: int, report: list[str]
) -> dict[str, float]:
    lines = [server.url(f"/tail?id=0&d={head:g}")]
    lines += [server.url(f"/big?id={i}&size={size}") for i in range(1, big + 1)]
    urls = url_file(f"big_{big}_{size}_{head:g}", len(lines), lambda i: lines[i])
    contenders = [
        Contender("fetchmany (defaults)", [*fetchmany_cmd(), "-q"], urls, len(lines)),
        Contender(
            "fetchmany --unordered", [*fetchmany_cmd(), "-q", "--unordered"], urls, len(lines)
        ),
    ]
    mib = size / 1024 / 1024
    print(f"(g) big bodies: one {head:g} s request, then {big} × {mib:g} MiB", flush=True)
    interleave(contenders, rounds, "g")
    ordered, unordered = contenders
    report += [
        f"## (g) memory under big bodies: one {head:g} s request first, then {big} bodies of "
        f"{mib:g} MiB",
        "",
        "Each big body is a JSON string (application/json) from bench/fault_server.py;",
        "fetchmany runs at its defaults, records to /dev/null: --limit 10 and a reorder",
        "window bounded in bytes (--window-bytes, 32 MiB by default; no count cap). In",
        "order, the slow first record holds back every later one: records wait behind it",
        "until they hold --window-bytes (encoded), then no new item starts until it is",
        "written.",
        "",
        *table(contenders, "fetchmany (defaults)"),
        "",
        f"- peak RSS, defaults: **{ordered.peak():.1f} MiB** (target < 128 MiB); "
        f"--unordered: {unordered.peak():.1f} MiB",
        "",
    ]
    return {
        "g_rss": ordered.peak(),
        "g_wall": ordered.median("wall"),
        "g_unordered_rss": unordered.peak(),
    }


# (h): the line a -P run's parent prints on stderr at the end with FETCHMANY_DEBUG=1.
PARENT_CPU = re.compile(r"parent CPU after start-up: ([0-9.]+) s, ([0-9.]+) us per record")


def parent_us_per_record(c: Contender) -> float | None:
    """Median of the parent's CPU µs per record over the runs that printed it."""
    found = [PARENT_CPU.search(s.stderr) for s in c.samples]
    values = [float(m.group(2)) for m in found if m is not None]
    return statistics.median(values) if values else None


def check_once(c: Contender, label: str) -> str | None:
    """One unmeasured run of ``c`` with its output checked (and the caches warmed):
    None when the output is right, else why not."""
    assert c.check is not None
    assert c.stdout is not None
    sample = measure(c)
    problem = c.check(c.stdout) if sample.rc == 0 else f"exit status {sample.rc}"
    if problem is not None and sample.stderr.strip():
        problem += f" ({sample.stderr.strip().splitlines()[-1]})"
    verdict = "ok" if problem is None else f"FAILED output check: {problem}"
    print(f"  [{label} check] {c.name:28s} wall {sample.wall:8.3f}s {verdict}", flush=True)
    c.stdout.unlink(missing_ok=True)
    return problem


def scenario_h(nginx: Nginx, n: int, rounds: int, report: list[str]) -> dict[str, float]:
    urls = url_file(f"posts_{n}", n, lambda i: nginx.url(f"/posts?id={i}"))
    command = [*fetchmany_cmd(), "-q", "--limit", "50"]
    debug = {"FETCHMANY_DEBUG": "1"}
    contenders = [
        Contender("fetchmany -P 1", [*command, "-P", "1"], urls, n),
        Contender("fetchmany -P 2", [*command, "-P", "2"], urls, n, env=debug),
        Contender("fetchmany -P 4", [*command, "-P", "4"], urls, n, env=debug),
        Contender("bare pool (uvloop)", [PY, BARE_POOL, "50"], urls, n),
    ]
    print(f"(h) processes: {n} requests to nginx, limit 50, -P 1, 2, 4", flush=True)
    check = record_check(["ok"] * n, ordered=True)
    failures: list[str] = []
    for c in contenders[:3]:
        checking = Contender(
            c.name, c.command, urls, n, OUT / "h_check.jsonl", check=check, env=c.env
        )
        problem = check_once(checking, "h")
        if problem is not None:
            failures.append(f"{c.name}: {problem}")
    interleave(contenders, rounds, "h")
    p1, p2, p4, bare = contenders
    rate = {c.name: n / c.median("wall") for c in contenders}
    speedup = rate[p2.name] / rate[p1.name]
    speedup4 = rate[p4.name] / rate[p1.name]
    parent = {c.name: parent_us_per_record(c) for c in contenders}
    rows = []
    for c in contenders:
        us = parent[c.name]
        cell = "—" if c in (p1, bare) else "not printed" if us is None else f"{us:.1f} µs"
        rows.append(
            f"| {c.name} | {c.median('wall'):.3f} s | {c.median('cpu'):.3f} s | "
            f"{cpu_per_request(c)} | {c.peak():.1f} MiB | {rate[c.name]:,.0f} | {cell} | "
            f"{c.median('wall') / p1.median('wall'):.3f} | {len(c.samples)} |"
        )
    report += [
        f"## (h) processes: {n:,} requests to nginx at --limit 50, -P 1, 2 and 4",
        "",
        "The URLs of (a); fetchmany at its defaults otherwise, output to /dev/null. With",
        "-P N, N forked workers each fetch a shard (--limit split between them) and the",
        "parent merges their records in order. -P 1 is the single process of (a) (no",
        "parent, no workers); the bare pool is (a)'s, for reference.",
        "",
        "- CPU is the whole process tree's: the parent waits for its workers, so their",
        "  usage is in getrusage(RUSAGE_CHILDREN) as measure.py reads it.",
        "- Peak RSS is **not** the tree's total: RUSAGE_CHILDREN's ru_maxrss is the largest",
        "  peak of any one waited-for descendant (the parent or one worker), not a sum. With",
        "  -P N, N + 1 processes are resident at once (workers share the parent's pages",
        "  copy-on-write at the fork), so the tree's total is at most N + 1 times this.",
        "- Parent CPU / record: with FETCHMANY_DEBUG=1 the -P parent prints its own CPU",
        "  after start-up (forks, reading the pipes, ordering, writing) divided by records;",
        "  the median of the runs.",
        "- The machine has 2 cores and nginx (1 worker) serves from the same ones: -P 2",
        "  competes with nginx for them, and -P 4 has more workers than cores.",
        "- Each fetchmany command ran once, unmeasured, before the rounds, with its output",
        "  checked: one record per URL, in index order, each a 200.",
        "",
        "| contender | wall (median) | CPU (median) | CPU µs / request | peak RSS (largest "
        "process) | requests/s | parent CPU µs / record | wall ÷ -P 1 | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- throughput -P 2 ÷ -P 1: **{speedup:.3f}** (target ≥ 1.4)",
        f"- throughput -P 4 ÷ -P 1: {speedup4:.3f}",
        f"- -P 1 ÷ bare pool (uvloop), wall: {p1.median('wall') / bare.median('wall'):.3f}",
        "",
    ]
    if failures:
        report += ["Output check failures:", "", *(f"- {f}" for f in failures), ""]
    results = {"h_speedup": speedup, "h_speedup4": speedup4, "h_check": 0.0 if failures else 1.0}
    for key, c in (("h_parent_us2", p2), ("h_parent_us4", p4)):
        us = parent[c.name]
        if us is not None:
            results[key] = us
    return results


# (i): a synthetic record like fetchmany's JSON Lines (fields in its order), about 500 B.
MERGE_TITLE = (
    "sunt aut facere repellat provident occaecati excepturi optio reprehenderit quia et "
    "suscipit suscipit recusandae consequuntur expedita et cum reprehenderit molestiae ut ut "
    "quas totam nostrum rerum est autem sunt"
)


def merge_line(i: int) -> str:
    url = f"https://example.test/item?id={i}"
    body = f'{{"id":{i},"title":"{MERGE_TITLE}"}}'
    return (
        f'{{"index":{i},"input":"{url}","url":"{url}","ok":true,"status":200,'
        f'"final_url":"{url}","content_type":"application/json","size":{len(body)},'
        f'"elapsed_ms":{1 + i % 997 / 1000:.3f},"attempts":1,"error":null,"body":{body}}}\n'
    )


def shard_files(total: int, parts: int = 3) -> list[Path]:
    """``parts`` JSON Lines files of ``total`` records in all, index i in part i % parts,
    as ``--shard K/N`` writes them; a file is reused when its size is the expected one."""
    paths = []
    for k in range(parts):
        path = OUT / f"merge_{total}_p{k}.jsonl"
        indexes = range(k, total, parts)
        size = sum(len(merge_line(i)) for i in indexes)  # ASCII: characters are bytes
        if not path.exists() or path.stat().st_size != size:
            print(f"  writing {path.name} ({len(indexes):,} records)", flush=True)
            temp = path.with_suffix(".tmp")
            with temp.open("w") as f:
                for start in range(0, len(indexes), 50_000):
                    f.writelines(map(merge_line, indexes[start : start + 50_000]))
            temp.replace(path)
        paths.append(path)
    return paths


def merged_check(command: list[str], total: int, csv_out: bool) -> str | None:
    """Run a merge once, unmeasured, reading its stdout as it comes: None when it holds
    ``total`` records with indexes 0, 1, 2... in order, else what is wrong."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=CLEAN_ENV)
    assert proc.stdout is not None
    expected = 0
    problem = None
    if csv_out:
        rows = csv.reader(io.TextIOWrapper(proc.stdout, encoding="utf-8", newline=""))
        header = next(rows, [])
        column = header.index("index") if "index" in header else 0
        if "index" not in header:
            problem = f"no index column in {header!r}"
        for row in rows:
            if problem is None and (column >= len(row) or row[column] != str(expected)):
                problem = f"row {expected} is {row[:1]!r}…, not index {expected}"
            expected += 1
    else:
        for line in proc.stdout:
            if problem is None and not line.startswith(b'{"index":%d,' % expected):
                problem = f"line {expected} starts {line[:24]!r}"
            expected += 1
    rc = proc.wait()
    if rc != 0:
        return f"exit status {rc}"
    if problem is None and expected != total:
        problem = f"{expected} records for {total}"
    return problem


def scenario_i(total: int, rounds: int, report: list[str]) -> dict[str, float]:
    print(f"(i) merge: 3 shard files, {total} records in all", flush=True)
    parts = [str(p) for p in shard_files(total)]
    mib = sum(os.path.getsize(p) for p in parts) / 1024 / 1024
    merge = [*fetchmany_cmd(), "--merge", *parts, "-q"]
    failures = []
    for name, command, csv_out in (
        ("JSON Lines", merge, False),
        ("CSV", [*merge, "-f", "csv"], True),
    ):
        problem = merged_check(command, total, csv_out)
        print(f"  [i check] --merge, {name}: {problem or 'ok'}", flush=True)
        if problem is not None:
            failures.append(f"--merge, {name}: {problem}")
    contenders = [
        Contender("fetchmany --merge (JSON Lines)", [*merge, "-o", "/dev/null"], None, total),
        Contender(
            "fetchmany --merge -f csv", [*merge, "-f", "csv", "-o", "/dev/null"], None, total
        ),
        Contender("cat p0 p1 p2 (I/O floor)", ["cat", *parts], None, total),
    ]
    interleave(contenders, rounds, "i")
    jsonl, as_csv, cat = contenders
    rows = [
        f"| {c.name} | {c.median('wall'):.3f} s | {c.median('cpu'):.3f} s | "
        f"{c.median('cpu') / total * 1e6:.2f} µs | {c.peak():.1f} MiB | "
        f"{total / c.median('wall'):,.0f} | {len(c.samples)} |"
        for c in contenders
    ]
    report += [
        f"## (i) merge: 3 shard files, {total:,} records in all ({mib:,.0f} MiB)",
        "",
        "Synthetic records like fetchmany's JSON Lines (its fields in its order, a ~250 B",
        "JSON body, ~500 B a line), index i in part i % 3 as `--shard K/3` writes them,",
        "generated once into bench/out/. `fetchmany --merge p0 p1 p2 -q -o /dev/null`, as",
        "JSON Lines and with `-f csv`; `cat p0 p1 p2 > /dev/null` is the I/O floor (the",
        "parts are in the page cache after the first run, so it is a memory copy). Each",
        "merge ran once, unmeasured, before the rounds, with its output read back: every",
        "index once, in order. cat's peak RSS is measure.py's own: Linux keeps the RSS",
        "high-water mark of the image a command was started from across its exec, so no",
        "row reads below about 12 MiB (`measure.py -- true` does too).",
        "",
        "| contender | wall (median) | CPU (median) | CPU / record | peak RSS | records/s | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- --merge JSON Lines ÷ cat, wall: {jsonl.median('wall') / cat.median('wall'):.1f}",
        "",
    ]
    if failures:
        report += ["Output check failures:", "", *(f"- {f}" for f in failures), ""]
    return {
        "i_jsonl_rps": total / jsonl.median("wall"),
        "i_csv_rps": total / as_csv.median("wall"),
        "i_cat_rps": total / cat.median("wall"),
        "i_jsonl_rss": jsonl.peak(),
        "i_csv_rss": as_csv.peak(),
        "i_check": 0.0 if failures else 1.0,
    }


def targets(results: dict[str, float]) -> list[str]:
    """The Targets table: one row per target of the scenarios that ran."""
    rows: list[str] = []

    def row(target: str, measured: str, met: bool | None) -> None:
        verdict = "" if met is None else "met" if met else "**missed**"
        rows.append(f"| {target} | {measured} | {verdict} |")

    r = results
    if "a_vs_bare" in r:
        row(
            "(a) fetchmany ≤ 1.05 × bare pool (uvloop), wall",
            f"{r['a_vs_bare']:.3f}",
            r["a_vs_bare"] <= 1.05,
        )
        row(
            "(a) fetchmany ≤ 0.87 × gather recipe, wall",
            f"{r['a_vs_gather']:.3f}",
            r["a_vs_gather"] <= 0.87,
        )
        row("(a) fetchmany ÷ curl -Z, reported", f"{r['a_vs_curl']:.2f}", None)
    if "b_efficiency" in r:
        row(
            "(b) efficiency = ideal ÷ (wall − wall on empty input) ≥ 0.95",
            f"{r['b_efficiency']:.3f}",
            r["b_efficiency"] >= 0.95,
        )
    if "c_growth" in r:
        row(
            "(c) RSS at the big input ≤ 1.15 × at the small one, < 80 MiB",
            f"{r['c_growth']:.3f}, {r['c_peak']:.1f} MiB",
            r["c_growth"] <= 1.15 and r["c_peak"] < 80,
        )
    if "d_ms" in r:
        row(
            "(d) first record ≤ 200 ms after the first response",
            f"{r['d_ms']:.1f} ms",
            r["d_ms"] <= 200,
        )
    if "e_one_url_ms" in r:
        row(
            "(e) one URL, -q, end to end ≤ 180 ms",
            f"{r['e_one_url_ms']:.0f} ms",
            r["e_one_url_ms"] <= 180,
        )
        row("(e) `--version` ≤ 60 ms", f"{r['e_version_ms']:.0f} ms", r["e_version_ms"] <= 60)
        row("(e) `--help` ≤ 60 ms", f"{r['e_help_ms']:.0f} ms", r["e_help_ms"] <= 60)
        row("(e) empty input, reported", f"{r['e_empty_ms']:.0f} ms", None)
    for key, ratio in r.items():
        if key.startswith("f_ratio "):
            shape = key.removeprefix("f_ratio ")
            checked = r[f"f_check {shape}"] == 1.0
            measured = f"{ratio:.3f}" + ("" if checked else "; output check FAILED")
            row(
                f"(f) ordered ≤ 1.1 × --unordered, tail {shape}", measured, ratio <= 1.1 and checked
            )
    if "g_rss" in r:
        row(
            "(g) peak RSS < 128 MiB, 1 MiB bodies behind a slow head",
            f"{r['g_rss']:.1f} MiB (--unordered {r['g_unordered_rss']:.1f} MiB)",
            r["g_rss"] < 128,
        )
    if "h_speedup" in r:
        checked = r["h_check"] == 1.0
        row(
            "(h) throughput -P 2 ≥ 1.4 × -P 1",
            f"{r['h_speedup']:.3f}" + ("" if checked else "; output check FAILED"),
            r["h_speedup"] >= 1.4 and checked,
        )
        row("(h) throughput -P 4 ÷ -P 1, reported", f"{r['h_speedup4']:.3f}", None)
        parent = [
            f"-P {p}: {r[key]:.1f} µs" if key in r else f"-P {p}: not printed"
            for p, key in ((2, "h_parent_us2"), (4, "h_parent_us4"))
        ]
        row("(h) parent CPU per record, reported", "; ".join(parent), None)
    if "i_jsonl_rps" in r:
        checked = r["i_check"] == 1.0
        row(
            "(i) --merge records/s, JSON Lines / CSV (cat: I/O floor), reported",
            f"{r['i_jsonl_rps']:,.0f} / {r['i_csv_rps']:,.0f} (cat {r['i_cat_rps']:,.0f})"
            + ("" if checked else "; output check FAILED"),
            None if checked else False,
        )
        row(
            "(i) --merge peak RSS, JSON Lines / CSV, reported",
            f"{r['i_jsonl_rss']:.1f} / {r['i_csv_rss']:.1f} MiB",
            None,
        )
    if not rows:
        return []
    return ["## Targets", "", "| target | measured | |", "| --- | --- | --- |", *rows, ""]


def commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or "unknown"


def machine() -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    versions = subprocess.run(
        [PY, "-c", "import aiohttp, uvloop, orjson; print(aiohttp.__version__, "
                   "uvloop.__version__, orjson.__version__)"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    aiohttp_v, uvloop_v, orjson_v = [*versions, "?", "?", "?"][:3]
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {mem_kib / 1024 / 1024:.0f} GiB",
        f"- {platform.platform()}; Python {platform.python_version()}",
        f"- aiohttp {aiohttp_v}, uvloop {uvloop_v}, orjson {orjson_v}",
        f"- {nginx}; {curl.splitlines()[0] if curl else 'curl ?'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--only", default="a,x,b,c,d,e,f,g,h,i", help="scenarios: a,x,b,c,d,e,f,g,h,i"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="default: bench/RESULTS.md, or bench/out/RESULTS-quick.md with --quick",
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    output = Path(args.output or (OUT / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md"))
    only = set(args.only.split(","))
    ensure_tools()
    OUT.mkdir(exist_ok=True)
    warm_bytecode()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report: list[str] = []
    results: dict[str, float] = {}
    with Nginx() as nginx:
        if "a" in only:
            results |= scenario_a(nginx, 10_000 if args.quick else 100_000, rounds, report)
        if "x" in only:
            scenario_xargs(nginx, rounds, report)
        if "b" in only:
            results |= scenario_b(nginx, rounds, report)
        if "c" in only:
            big = 100_000 if args.quick else 1_000_000
            results |= scenario_c(nginx, 10_000, big, rounds, report)
        if "d" in only:
            results |= scenario_d(rounds, report)
        if "e" in only:
            results |= scenario_e(nginx, rounds, report)
        if "h" in only:
            results |= scenario_h(nginx, 10_000 if args.quick else 100_000, rounds, report)
    if only & {"f", "g"}:
        with FaultServer() as server:
            if "f" in only:
                results |= scenario_f(server, 5_000 if args.quick else 50_000, rounds, report)
            if "g" in only:
                results |= scenario_g(server, 400, 1024 * 1024, 3.0, rounds, report)
    if "i" in only:
        results |= scenario_i(100_000 if args.quick else 1_000_000, rounds, report)
    command = " ".join(["python", "bench/run.py", *sys.argv[1:]])
    header = [
        "# fetchmany benchmark results",
        "",
        f"Run {started} with `{command}` at commit {commit()}; {rounds} interleaved",
        "round(s) per scenario."
        + (" **Quick run: small inputs, figures for a sanity check only.**" if args.quick else ""),
        "Times are wall-clock and CPU (user+sys) of the client process (with its workers",
        "for -P); peak RSS from getrusage, the largest one process's (see (h)). nginx",
        "(1 worker) serves on 127.0.0.1 on the same machine, and so does",
        "bench/fault_server.py (its own process) for (f) and (g). Commands run without",
        "PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE (see bench/measure.py).",
        "",
        "Machine:",
        "",
        *machine(),
        "",
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(header + report + targets(results)) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
