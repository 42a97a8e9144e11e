"""Quotas that servers announce in headers, and the pacing that keeps a run within them.

Three families are read (the first found wins):

- the IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers-08 to -12,
  the 2026 revision): ``RateLimit-Policy: "default";q=100;w=1`` (a quota of ``q``
  per ``w`` seconds; several policies in a list) and ``RateLimit: "default";r=42;t=1``
  (``r`` left, reset in ``t`` seconds), matched by policy name; also draft -07's
  ``RateLimit: limit=100, remaining=50, reset=30``;
- the earlier drafts' ``RateLimit-Limit`` (``100`` or ``100, 100;w=10``),
  ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds from now);
- the widespread ``X-RateLimit-Limit/Remaining/Reset``, ``Reset`` being seconds from
  now or, as GitHub's REST API sends it, a Unix time (any value past 10^9 is one).

Whatever a server sends is clamped, never trusted to stall or crash a run: a
negative remainder is 0, a quota of 0 or a window of 0 is no policy, and no wait is
longer than the run's ``--max-backoff``.

Pacing (``QuotaPacer``): starts are spaced evenly at the quota's rate, ``q / w``
(``w`` from the policy, else the longest reset seen, since a window's first answer
shows its length), times ``HEADROOM``, so that arrival jitter at the server never
pushes one request too many into a window; and a budget guard: once the requests
started since the freshest answer have spent what it said was left, no request
starts until its window resets. Under ``-P`` each worker paces its ``share``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final, Protocol

HEADROOM: Final = 0.93
"""The share of an announced rate a run uses: slack for arrival jitter, and so that a
window's last few requests are not spent while answers saying so are on their way
(which would stop the run until the reset)."""
_EPOCH: Final = 1e9
"""A reset value past this is a Unix time (2001-09-09), not seconds from now."""
_EPOCH_MS: Final = 1e12
"""... and past this a Unix time in milliseconds."""
_MIN_WINDOW: Final = 1.0


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Announced:
    """What one answer said of its quota; each part None when it was not said (or made
    no sense)."""

    quota: float | None = None
    """Requests allowed per window."""
    window: float | None = None
    """The window's length in seconds."""
    remaining: float | None = None
    """Requests left in the current window."""
    reset: float | None = None
    """Seconds until the current window resets."""

    @property
    def rate(self) -> float | None:
        """Requests per second the quota allows, when both its parts are known."""
        if self.quota is None or self.window is None:
            return None
        return self.quota / self.window


def _number(value: object) -> float | None:
    """A finite number from a header's parsed value, or None (text, NaN, booleans)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _plain(text: str | None) -> float | None:
    """A plain numeric header (``42``, ``1.5``); None for anything else."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > 32:
        return None
    return _number(text)


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def _remaining(value: float | None) -> float | None:
    return None if value is None else max(0.0, value)


def _reset(value: float | None, now: float) -> float | None:
    """Seconds until reset from seconds, a Unix time or a Unix time in milliseconds."""
    if value is None or value < 0:
        return None
    if value >= _EPOCH_MS:
        value = value / 1000 - now
    elif value >= _EPOCH:
        value -= now
    return max(0.0, value)


def read_announced(headers: Headers, now: float | None = None) -> Announced | None:
    """The quota an answer announces, or None when it announces none."""
    wall = time.time() if now is None else now
    state = headers.get("RateLimit")
    if state is not None or headers.get("RateLimit-Limit") is None:
        found = _structured(headers.get("RateLimit-Policy"), state, wall)
        if found is not None:
            return found
    for prefix in ("RateLimit-", "X-RateLimit-"):
        limit_text = headers.get(prefix + "Limit")
        remaining = _remaining(_plain(headers.get(prefix + "Remaining")))
        reset = _reset(_plain(headers.get(prefix + "Reset")), wall)
        quota = window = None
        if limit_text is not None:
            quota, window = _limit_field(limit_text)
        if quota is None and remaining is None:
            continue
        policy = None
        if prefix == "RateLimit-" and (text := headers.get("RateLimit-Policy")) is not None:
            policy = _limit_field(text)
        if policy is not None and window is None:
            window = policy[1]
        return Announced(quota, window, remaining, reset)
    return None


def _limit_field(text: str) -> tuple[float | None, float | None]:
    """``100`` or ``100, 100;w=10`` (earlier drafts): the quota and its window, if said."""
    from http_sfv.list import List

    parsed = List()
    try:
        parsed.parse(text.encode("latin-1", "replace"))
    except ValueError:
        return _positive(_plain(text.split(",")[0])), None
    quota = window = None
    for member in parsed:
        value = _positive(_number(getattr(member, "value", None)))
        if value is None:
            continue
        params = getattr(member, "params", {})
        if quota is None or "w" in params:
            quota, window = value, _positive(_number(params.get("w")))
    return quota, window


def _structured(policy_text: str | None, state_text: str | None, wall: float) -> Announced | None:
    """The IETF fields: the binding policy (the lowest rate), with its current state."""
    from http_sfv.list import List

    policies: dict[str, tuple[float, float | None]] = {}
    if policy_text is not None:
        parsed = List()
        try:
            parsed.parse(policy_text.encode("latin-1", "replace"))
        except ValueError:
            parsed = List()
        for member in parsed:
            params = getattr(member, "params", {})
            unit = params.get("qu")
            if unit is not None and str(unit) != "requests":
                continue  # a quota of bytes or of concurrency is not one of request starts
            value = getattr(member, "value", "")
            if "q" in params:
                name, quota = str(value), _positive(_number(params.get("q")))
            else:  # draft -07: ``100;w=60``, the quota as the value, no name
                name, quota = "", _positive(_number(value))
            if quota is not None:
                policies[name] = (quota, _positive(_number(params.get("w"))))
    states: dict[str, tuple[float | None, float | None]] = {}
    if state_text is not None:
        states = _states(state_text.encode("latin-1", "replace"), wall)
    best: Announced | None = None
    for name in set(policies) | set(states):
        quota, window = policies.get(name, (None, None))
        remaining, reset = states.get(name, (None, None))
        if quota is None and remaining is None:
            continue
        candidate = Announced(quota, window, remaining, reset)
        if best is None or _tighter(candidate, best):
            best = candidate
    return best


def _states(data: bytes, wall: float) -> dict[str, tuple[float | None, float | None]]:
    """Each policy's (remaining, reset) from a ``RateLimit`` field."""
    from http_sfv.dictionary import Dictionary
    from http_sfv.list import List

    states: dict[str, tuple[float | None, float | None]] = {}
    parsed = List()
    try:
        parsed.parse(data)
    except ValueError:
        # Draft -07: ``limit=100, remaining=50, reset=30``, a dictionary.
        legacy = Dictionary()
        try:
            legacy.parse(data)
        except ValueError:
            return states
        values = {key: _number(getattr(item, "value", None)) for key, item in legacy.items()}
        if "limit" in values or "remaining" in values:
            states[""] = (_remaining(values.get("remaining")), _reset(values.get("reset"), wall))
        return states
    for member in parsed:
        params = getattr(member, "params", {})
        states[str(getattr(member, "value", ""))] = (
            _remaining(_number(params.get("r"))),
            _reset(_number(params.get("t")), wall),
        )
    return states


def _tighter(one: Announced, other: Announced) -> bool:
    """Whether ``one`` binds sooner than ``other``: spent first, or the lower rate."""
    if (one.remaining == 0) != (other.remaining == 0):
        return one.remaining == 0
    rate, other_rate = one.rate, other.rate
    if rate is None or other_rate is None:
        return rate is not None
    return rate < other_rate


class QuotaPacer:
    """One host's pacing under an announced quota (see the module docstring).

    ``reserve`` is called once per request start and says how long to wait first;
    ``learn`` once per answer that announced a quota, with the start number
    ``reserve`` gave the request it answers.
    """

    def __init__(self, share: float = 1.0, longest_wait: float = 60.0) -> None:
        self._share = share
        self._longest_wait = longest_wait
        self._interval = 0.0
        self._next = 0.0
        self._starts = 0
        self._window: float | None = None
        self._longest_reset = 0.0
        self._budget: float | None = None
        """Starts left before the window resets, counted from ``_counted``."""
        self._counted = 0
        self._known_from = -1
        self._remaining: float | None = None
        self._refilled: float | None = None
        """When a window was last seen to begin (what was left jumped up)."""
        self._reset_at = 0.0
        self.rate: float | None = None
        """The rate paced at, requests per second (this process's share)."""
        self.paced_until = 0.0
        """Until when a request waited for the quota (for the display)."""

    def reserve(self, now: float) -> tuple[int, float]:
        """A start number for the next request, and how long it must wait to start."""
        start = max(now, self._next)
        if self._budget is not None and now < self._reset_at:
            spent = self._starts - self._counted
            if spent >= self._budget:
                start = max(start, min(self._reset_at, now + self._longest_wait))
        self._next = start + self._interval
        self._starts += 1
        wait = start - now
        if wait > 0:
            self.paced_until = start
        return self._starts, wait

    def learn(self, number: int, announced: Announced, now: float) -> None:
        """An answer to the request started as ``number`` announced ``announced``."""
        share = self._share
        if announced.reset is not None:
            self._longest_reset = max(self._longest_reset, announced.reset)
        window = announced.window
        if window is None and self._longest_reset:
            window = max(_MIN_WINDOW, math.ceil(self._longest_reset))
        if announced.quota is not None and window is not None:
            rate = announced.quota / window * share * HEADROOM
            self.rate = rate
            self._interval = 1.0 / rate
        remaining = announced.remaining
        if remaining is not None and number > self._known_from:
            # The freshest word on what is left: every request started after the one it
            # answers may already have been counted against it.
            if (
                self._remaining is not None
                and remaining > self._remaining + 2  # not two requests served out of order
                and remaining >= (announced.quota or 0.0) / 2
            ):
                self._refilled = now  # a window began, at the latest now
            self._remaining = remaining
            self._known_from = number
            self._budget = remaining * share
            self._counted = number
            reset = announced.reset if announced.reset is not None else window
            reset_at = now + (reset if reset is not None else 1.0)
            if window is not None and self._refilled is not None:
                # Whole seconds (``t=1``) may overstate the time to the reset by almost
                # a second; a window seen to begin gives its phase, and the reset is the
                # first window end after now: also never before the true one.
                ends = self._refilled + window * math.ceil((now - self._refilled) / window)
                reset_at = min(reset_at, ends if ends > now else ends + window)
            self._reset_at = min(reset_at, now + self._longest_wait)

    @property
    def active(self) -> bool:
        return self.rate is not None or self._budget is not None
