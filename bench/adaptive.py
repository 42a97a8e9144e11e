"""``--limit auto`` on the shapes real servers have, side by side with fixed limits.

    python bench/adaptive.py                  # the whole matrix, one round
    python bench/adaptive.py --rounds 3       # medians of three interleaved rounds
    python bench/adaptive.py --only queue,jitter --processes 2

Each run is the installed command in a fresh process (``python -m fetchmany``, as a
user runs it) against ``tests/shapes_server.py`` in a process of its own on
127.0.0.1, so the server's CPU is not the client's. What is judged is counted at the
server: requests present (served + waiting) over time, overload answers, and each
request's time from arrival to answer. Where the limit settled is what the run's
summary says. Contenders of a shape run one after another within a round, rounds
interleave, and the table shows the median round.

Targets (issue 17), checked per row and marked PASS/FAIL:

| shape | target for --limit auto |
| reject | wall <= 1.3x the best fixed limit; overload answers <= 5% |
| queue | median latency after the first second <= 2x the service time; wall <= 1.3x --limit 12 |
| jitter | wall <= 0.5x the default --limit 10 |
| (all without overload) | never slower than the default --limit 10 |
| step | follows down within 1 s (overload <= 10% in the step), back up within 3 s |
| two hosts | each host settles within 0.7-1.5x its capacity; the big one not held back |
| quota | zero 429s; paces within 10% of the quota's rate |
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent / "tests" / "shapes_server.py"
SERVICE = 0.04


@dataclass
class Host:
    spec: dict[str, Any]
    capacity: int | None = None


@dataclass
class Case:
    name: str
    hosts: list[Host]
    requests: int
    fixed: list[str]
    """The fixed alternatives, as --limit values (or whole argument strings)."""
    judge: Callable[[Case, dict[str, Run]], list[str]] = lambda case, runs: []
    note: str = ""


@dataclass
class Run:
    label: str
    wall: float
    code: int
    stats: list[dict[str, Any]]
    settled: dict[str, int]
    summary: str
    ports: list[int]

    @property
    def overloads(self) -> int:
        return sum(s["overloads"] for s in self.stats)

    @property
    def served(self) -> int:
        return sum(s["served"] for s in self.stats)

    def latency_after(self, host: int = 0, after: float = 1.0) -> float | None:
        """Median time from arrival to answer of requests that arrived after ``after`` s."""
        spans = [done - arrived for arrived, done, _ in self.stats[host]["log"] if arrived >= after]
        return statistics.median(spans) if spans else None

    def presence(self, host: int = 0, every: float = 0.25) -> str:
        points, next_at = [], 0.0
        for at, present in self.stats[host]["presence"]:
            if at >= next_at:
                points.append(f"{at:.2f}s:{present}")
                next_at = at + every
        return " ".join(points)

    def median_presence(self, host: int = 0, after: float = 1.0) -> float | None:
        values = [p for at, p in self.stats[host]["presence"] if at >= after]
        return statistics.median(values) if values else None


def start_server(hosts: list[Host]) -> tuple[subprocess.Popen[str], list[int]]:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), *(json.dumps(h.spec) for h in hosts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ports: list[int] = json.loads(server.stdout.readline())
    return server, ports


def stop_server(server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None
    server.stdin.close()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()


_SETTLED = re.compile(r"limit auto settled at: (.*?)(?:;|$)", re.M)


def settled_of(summary: str) -> dict[str, int]:
    """Each host's settled limit from the summary line (``host:port N (...)``)."""
    match = _SETTLED.search(summary)
    if match is None:
        return {}
    out = {}
    for part in re.finditer(r"(\S+:\d+) (\d+)", match.group(1)):
        out[part.group(1)] = int(part.group(2))
    return out


def run_one(case: Case, limit: str, processes: int) -> Run:
    server, ports = start_server(case.hosts)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as urls:
            for i in range(case.requests):
                port = ports[i % len(ports)]
                urls.write(f"http://127.0.0.1:{port}/item?id={i}\n")
        args = [sys.executable, "-m", "fetchmany", urls.name, "--body", "none"]
        args += limit.split() if " " in limit else ["--limit", limit]
        if processes > 1:
            args += ["-P", str(processes)]
        started = time.monotonic()
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - started
        os.unlink(urls.name)
        stats = []
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats") as answer:
                stats.append(json.load(answer))
    finally:
        stop_server(server)
    label = f"--limit {limit}" if " " not in limit else limit
    return Run(label, wall, done.returncode, stats, settled_of(done.stderr), done.stderr, ports)


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}: {text}"


def never_worse(case: Case, runs: dict[str, Run]) -> list[str]:
    auto, ten = runs["auto"], runs.get("10")
    if ten is None or ten.overloads:
        return []
    return [
        verdict(
            auto.wall <= ten.wall * 1.02,
            f"never slower than --limit 10 ({auto.wall / ten.wall:.2f}x)",
        )
    ]


def judge_reject(case: Case, runs: dict[str, Run]) -> list[str]:
    auto = runs["auto"]
    best = min(
        (r for key, r in runs.items() if key != "auto" and r.code == 0), key=lambda r: r.wall
    )
    share = auto.overloads / case.requests
    return [
        verdict(
            auto.wall <= 1.3 * best.wall,
            f"wall {auto.wall / best.wall:.2f}x the best fixed ({best.label}); target <= 1.3x",
        ),
        verdict(share <= 0.05, f"overload answers {share:.1%}; target <= 5%"),
    ]


def judge_queue(case: Case, runs: dict[str, Run]) -> list[str]:
    auto, twelve = runs["auto"], runs["12"]
    latency = auto.latency_after() or 0.0
    return [
        verdict(
            latency <= 2 * SERVICE,
            f"median latency after 1 s {latency * 1000:.0f} ms; "
            f"target <= {2 * SERVICE * 1000:.0f} ms",
        ),
        verdict(
            auto.wall <= 1.3 * twelve.wall,
            f"wall {auto.wall / twelve.wall:.2f}x --limit 12; target <= 1.3x",
        ),
        *never_worse(case, runs),
    ]


def judge_jitter(case: Case, runs: dict[str, Run]) -> list[str]:
    auto, ten = runs["auto"], runs["10"]
    return [
        verdict(
            auto.wall <= 0.5 * ten.wall,
            f"wall {auto.wall / ten.wall:.2f}x --limit 10; target <= 0.5x",
        )
    ]


def judge_step(case: Case, runs: dict[str, Run]) -> list[str]:
    auto = runs["auto"]
    (down_at, _), (up_at, high) = case.hosts[0].spec["schedule"]
    log = auto.stats[0]["log"]
    in_step = [status for arrived, _, status in log if down_at <= arrived < up_at]
    share = sum(1 for s in in_step if s in (429, 503)) / max(1, len(in_step))
    # Followed down: the start of the first quarter second after the step whose
    # overload answers were 10% of its requests or fewer (later probing past the new
    # capacity draws a few more; the share in the whole step counts those).
    buckets: dict[int, list[int]] = {}
    for arrived, _, status in log:
        if down_at <= arrived < up_at:
            buckets.setdefault(int((arrived - down_at) * 4), []).append(status)
    calm = [b for b, statuses in sorted(buckets.items())
            if sum(s in (429, 503) for s in statuses) <= 0.1 * len(statuses)]  # fmt: skip
    down = calm[0] / 4 if calm else float("inf")
    reached = [
        at for at, present in auto.stats[0]["presence"] if at >= up_at and present >= 0.8 * high
    ]
    up = reached[0] - up_at if reached else float("inf")
    return [
        verdict(
            down <= 1.0 and share <= 0.10,
            f"followed down in {down:.1f} s with "
            f"{share:.1%} overload in the step; target <= 1 s, <= 10%",
        ),
        verdict(up <= 3.0, f"back up to {0.8 * high:.0f} present in {up:.1f} s; target <= 3 s"),
    ]


def judge_hosts(case: Case, runs: dict[str, Run]) -> list[str]:
    auto = runs["auto"]
    out = []
    for number, host in enumerate(case.hosts):
        assert host.capacity is not None
        key = f"127.0.0.1:{auto.ports[number]}"
        settled = auto.settled.get(key)
        ratio = settled / host.capacity if settled else 0.0
        out.append(
            verdict(
                0.7 <= ratio <= 1.5,
                f"host of capacity {host.capacity} settled "
                f"at {settled} ({ratio:.2f}x); target 0.7-1.5x",
            )
        )
    big = max(range(len(case.hosts)), key=lambda n: case.hosts[n].capacity or 0)
    log = auto.stats[big]["log"]
    span = max(done for _, done, _ in log) - min(at for at, _, _ in log) if log else 0.0
    rate = len(log) / span if span else 0.0
    capacity = case.hosts[big].capacity or 1
    out.append(
        verdict(
            rate >= 0.5 * capacity / SERVICE,
            f"big host served {rate:.0f}/s "
            f"while it had work ({capacity / SERVICE:.0f}/s at capacity)",
        )
    )
    return out


def judge_quota(case: Case, runs: dict[str, Run]) -> list[str]:
    auto = runs["auto"]
    spec = case.hosts[0].spec
    quota_rate = spec["quota"] / spec["window"]
    log = sorted(auto.stats[0]["log"])
    first, last = log[0][0], log[-1][0]
    rate = (len(log) - 1) / (last - first) if last > first else 0.0
    return [
        verdict(auto.overloads == 0, f"{auto.overloads} answers of 429; target 0"),
        verdict(
            abs(rate / quota_rate - 1) <= 0.10,
            f"paced at {rate:.1f}/s against a quota "
            f"of {quota_rate:g}/s ({rate / quota_rate:.2f}x); target within 10%",
        ),
    ]


def cases(scale: float) -> list[Case]:
    def n(count: int) -> int:
        return max(50, int(count * scale))

    def shape(kind: str, **more: Any) -> dict[str, Any]:
        return {"kind": kind, "service": SERVICE, **more}

    out = [
        Case(
            "reject",
            [Host(shape("reject", capacity=12))],
            n(800),
            ["12", "10", "30"],
            judge_reject,
            "capacity 12, 40 ms, 503 beyond",
        ),
        Case(
            "reject-429",
            [Host(shape("reject", capacity=12, overload_status=429, retry_after=1))],
            n(800),
            ["12", "10", "30"],
            judge_reject,
            "capacity 12, 40 ms, 429 + Retry-After: 1 beyond",
        ),
        Case(
            "queue",
            [Host(shape("queue", capacity=12))],
            n(1500),
            ["12", "10", "30"],
            judge_queue,
            "capacity 12, 40 ms, the rest wait in line",
        ),
        Case(
            "jitter",
            [Host(shape("jitter", jitter=[0.0, 0.05]))],
            n(3000),
            ["10", "50"],
            judge_jitter,
            "no capacity limit, latency even over 0-50 ms",
        ),
        Case(
            "ample",
            [Host(shape("queue", capacity=1000))],
            n(2000),
            ["10"],
            never_worse,
            "capacity 1000, 40 ms",
        ),
        Case(
            "fast",
            [Host(shape("jitter", jitter=[0.0, 0.002]))],
            n(5000),
            ["10", "50"],
            never_worse,
            "no capacity limit, latency even over 0-2 ms",
        ),
        Case(
            "step",
            [Host(shape("step", capacity=40, schedule=[[2.0, 10], [4.0, 40]]))],
            n(4000),
            ["10", "40"],
            judge_step,
            "capacity 40, 10 from 2 s, 40 from 4 s, 503 beyond",
        ),
        Case(
            "two hosts (reject)",
            [Host(shape("reject", capacity=5), 5), Host(shape("reject", capacity=50), 50)],
            n(2000),
            ["10", "50"],
            judge_hosts,
            "capacity 5 and 50, 503 beyond, interleaved",
        ),
        Case(
            "two hosts (queue)",
            [Host(shape("queue", capacity=5), 5), Host(shape("queue", capacity=50), 50)],
            n(2000),
            ["10", "50"],
            judge_hosts,
            "capacity 5 and 50, queueing, interleaved",
        ),
    ]
    for style in ("ietf", "draft", "x", "x-epoch"):
        spec = shape("quota", quota=100, window=1.0, style=style)
        out.append(
            Case(
                f"quota ({style})",
                [Host(spec)],
                n(500),
                ["10", "--rate 100/s"],
                judge_quota,
                f"100 a second, announced in {style} headers, 429 beyond",
            )
        )
    return out


def table(case: Case, runs: dict[str, Run]) -> list[str]:
    lines = [f"### {case.name}: {case.note}, {case.requests} requests", ""]
    lines.append(
        "| run | wall | overload answers | median latency after 1 s | "
        "max present | settled (summary) |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for run in runs.values():
        latencies = [run.latency_after(h) for h in range(len(run.stats))]
        shown = " / ".join(f"{x * 1000:.0f} ms" if x is not None else "-" for x in latencies)
        present = " / ".join(str(s["max_present"]) for s in run.stats)
        settled = ", ".join(str(v) for v in run.settled.values()) or "-"
        lines.append(
            f"| {run.label} | {run.wall:.2f} s | {run.overloads} "
            f"({run.overloads / case.requests:.1%}) | {shown} | {present} | "
            f"{settled} |"
        )
    lines.append("")
    for host in range(len(runs["auto"].stats)):
        lines.append(f"present at host {host} over time (auto): {runs['auto'].presence(host)}")
    lines.append("")
    lines += [f"- {line}" for line in case.judge(case, runs)]
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="half the requests")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="", help="shapes, comma-separated (prefixes)")
    parser.add_argument("--processes", "-P", type=int, default=1)
    args = parser.parse_args()
    chosen = [
        c
        for c in cases(0.5 if args.quick else 1.0)
        if not args.only or any(c.name.startswith(o) for o in args.only.split(","))
    ]
    results: dict[str, list[dict[str, Run]]] = {c.name: [] for c in chosen}
    for _ in range(args.rounds):
        for case in chosen:
            runs = {"auto": run_one(case, "auto", args.processes)}
            for limit in case.fixed:
                runs[limit] = run_one(case, limit, args.processes)
            results[case.name].append(runs)
    print(f"-P {args.processes}, {args.rounds} round(s), median round by auto's wall\n")
    for case in chosen:
        rounds = sorted(results[case.name], key=lambda runs: runs["auto"].wall)
        print("\n".join(table(case, rounds[len(rounds) // 2])))


if __name__ == "__main__":
    main()
