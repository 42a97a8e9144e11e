"""The checks of setting values (``checks.py``) that the library and the CLI share."""

from __future__ import annotations

import math

import pytest

from fetchmany.checks import format_size, rate, seconds, size


@pytest.mark.parametrize(
    ("given", "per_second"),
    [("20", 20.0), ("20/s", 20.0), ("600/m", 10.0), ("36/h", 0.01), (5, 5.0), (0.5, 0.5)],
)
def test_rates(given: str | float, per_second: float) -> None:
    assert rate(given) == pytest.approx(per_second)


@pytest.mark.parametrize("given", ["0", "fast", "-1/s", "5/d", "", 0, -1, math.nan, math.inf])
def test_bad_rates(given: str | float) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        rate(given)


@pytest.mark.parametrize(
    ("given", "count"),
    [("500KB", 500_000), ("10MB", 10_000_000), ("64KiB", 65536), ("1gb", 10**9), (7, 7), ("0", 0)],
)
def test_sizes_read_back_as_written(given: str | int, count: int) -> None:
    assert size(given) == count
    assert size(format_size(count)) == count


@pytest.mark.parametrize("given", ["lots", "-1KB", "1TB", "nanMB", "infKB", -1])
def test_bad_sizes(given: str | int) -> None:
    with pytest.raises(ValueError, match=r"not a size: .* \(try 500KB, 10MB, 1GB\)"):
        size(given)


def test_seconds_are_finite_and_in_range() -> None:
    assert seconds(0, zero=True) == 0.0
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite number of seconds above 0"):
            seconds(bad, zero=False)
    for wrong in ("1", None, True):
        with pytest.raises(TypeError, match="must be a number of seconds"):
            seconds(wrong, zero=False)
