"""Surviving mutants of ``--limit auto``'s controller against the original, on random runs.

    python tools/differ.py fetchmany.fetch.adaptive.xǁAdaptiveLimitǁ_overload__mutmut_13
    python tools/differ.py --seed 22 NAME      # where one run first differs, step by step

A survivor of ``fetch/adaptive.py`` (or of ``fetch/quota.py``, whose pacer it holds) is
either a guarantee no test holds or a change that makes no difference. Reading the code
decides most; this decides the rest by experiment. Each mutant and the original drive an
``AdaptiveLimit`` through the same random runs on a simulated clock (starts, answers
fast or slow, rejections, failures, Retry-After, announced quotas), and the limit, the
summary, the bar's mark and the paces are compared after every step. A mutant that
differs gives the seed of a run to write a test from. One that never does is evidence,
not proof: the reading must still say why it is equivalent. (Pass twelve's ``others <=
1`` in ``_overload`` never differed in 3,000 runs, yet eight requests in flight, all
rejected a round trip apart, reach it; ``test_adaptive.py`` now builds that run.)

Runs twice: with the clock starting at 0, as a test's may, and at 1000, as the
monotonic clock does a second after boot (a start value that matters only in the first
second is equivalent in use). Needs the mutants made (``tools/mutate.py``); mutmut's
trampolines choose the mutant by ``MUTANT_UNDER_TEST`` on every call, so one process
runs them all.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "mutants" / "src"))
os.environ["MUTANT_UNDER_TEST"] = ""

from fetchmany.fetch.adaptive import AdaptiveLimit, Lesson, Overload  # noqa: E402
from fetchmany.fetch.quota import Announced  # noqa: E402


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def one_run(seed: int, start_at: float) -> list[Any]:
    """What the controller says after each step of the random run ``seed``."""
    rng = random.Random(seed)
    clock = Clock(start_at)
    gate = AdaptiveLimit(
        rng.choice([4, 16, 64]),
        rng.choice([1, 2, 3, 4, 8, 16]),
        clock=clock,
        longest_wait=rng.choice([0.5, 60.0]),
    )
    rtt = rng.choice([0.01, 0.04, 0.3])
    rejected = rng.choice([0.0, 0.05, 0.3, 0.8])
    failed = rng.choice([0.0, 0.1])
    held = rng.choice([0.0, 0.05])
    in_flight: list[tuple[int, int]] = []
    trace: list[Any] = []
    for _ in range(rng.choice([50, 300])):
        if rng.random() < 0.5 and gate._gate.try_acquire():
            ticket, number, wait = gate.pace(clock.now)
            gate.started()
            in_flight.append((ticket, number))
            trace.append(("paced", round(wait, 9)))
        elif in_flight:
            ticket, number = in_flight.pop(
                rng.randrange(len(in_flight)) if rng.random() < 0.3 else 0
            )
            clock.now += rng.uniform(0, 2 * rtt)
            draw = rng.random()
            overload = (
                Overload.REJECTED
                if draw < rejected
                else Overload.FAILED
                if draw < rejected + failed
                else None
            )
            latency = rtt * rng.uniform(0.5, 3) * (1 + len(in_flight) / 8)
            retry_after = rng.choice([0.2, 1.0, 5.0]) if rng.random() < held else None
            announced: tuple[Announced, ...] = ()
            if rng.random() < 0.02:
                announced = (
                    Announced(
                        quota=rng.choice([10, 100]),
                        window=rng.choice([1, 60]),
                        remaining=rng.choice([0, 5, 50]),
                        reset=rng.choice([0.5, 30]),
                    ),
                )
            taught = latency if rng.random() > 0.05 else None
            gate.release(ticket, number, Lesson(taught, overload, retry_after, announced))
        else:
            clock.now += rng.uniform(0, rtt)
        trace.append((gate.current, gate.settled(), gate.mark(clock.now), gate.in_flight))
    return trace


def runs(mutant: str, seeds: range, start_at: float) -> list[Any]:
    """Each run's trace with ``mutant`` in place ("" for none), or how it crashed."""
    os.environ["MUTANT_UNDER_TEST"] = mutant
    traces: list[Any] = []
    for seed in seeds:
        try:
            traces.append(one_run(seed, start_at))
        except Exception as exc:  # a mutant's crash is a difference, not ours
            traces.append(("crashed", type(exc).__name__, str(exc)))
    return traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mutants", nargs="+", help="mutmut's names (mutmut results lists them)")
    parser.add_argument("--runs", type=int, default=1500, help="random runs per clock (1500)")
    parser.add_argument("--seed", type=int, help="show where this run first differs")
    args = parser.parse_args()
    if args.seed is not None:
        for mutant in args.mutants:
            for start_at in (0.0, 1000.0):
                original = runs("", range(args.seed, args.seed + 1), start_at)[0]
                changed = runs(mutant, range(args.seed, args.seed + 1), start_at)[0]
                step = next(
                    (i for i, (a, b) in enumerate(zip(original, changed, strict=False)) if a != b),
                    None,
                )
                print(f"{mutant} (clock from {start_at:g}):")
                if step is None:
                    print("    the same")
                elif changed and changed[0] == "crashed":
                    print(f"    crashed: {changed[1]}: {changed[2]}")
                else:
                    print(f"    step {step}: original {original[step]}")
                    print(f"    step {step}: mutant   {changed[step]}")
        return
    seeds = range(args.runs)
    for start_at in (0.0, 1000.0):
        original = runs("", seeds, start_at)
        for mutant in args.mutants:
            differ = [
                s
                for s, a, b in zip(seeds, original, runs(mutant, seeds, start_at), strict=True)
                if a != b
            ]
            first = f" (first: --seed {differ[0]})" if differ else ""
            print(
                f"clock from {start_at:g}: {mutant}: {len(differ)} of {len(seeds)} differ{first}",
                flush=True,
            )


if __name__ == "__main__":
    main()
