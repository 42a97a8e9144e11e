"""``fetch/timings.py``: an attempt's phases in milliseconds, from its clock readings.

The readings themselves come from aiohttp's hooks against real servers
(test_rich_records.py); here the arithmetic, on readings chosen so that every digit of
the result is known.
"""

from __future__ import annotations

import pytest

from fetchmany.fetch.timings import Timings

PHASES = ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms")


@pytest.mark.parametrize(
    ("readings", "phases"),
    [
        pytest.param(
            Timings(
                start=100.0, connect_start=100.0005, dns_start=100.001, dns_end=100.00223456,
                connect_end=100.0125, headers=100.2505, end=100.75,
            ),
            (1.235, 12.0, None, 250.5, 750.0),
            id="a new connection to a name",
        ),
        pytest.param(
            Timings(start=100.0, headers=100.0004321, end=100.00123456),
            (None, None, None, 0.432, 1.235),
            id="a kept-alive connection",
        ),
    ],
)  # fmt: skip
def test_phases_are_milliseconds_rounded_to_the_microsecond(
    readings: Timings, phases: tuple[float | None, ...]
) -> None:
    assert readings.to_dict() == dict(zip(PHASES, phases, strict=True))
