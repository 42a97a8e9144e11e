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

Pacing (``QuotaPacer``), per policy, by the length of its window:

- a *rate* (a window of up to ``SHORT_WINDOW`` seconds: 100 a second, 20 in 5 s) is
  paced evenly at ``q / w`` times ``HEADROOM``, so that arrival jitter at the server
  never pushes one request too many into a window;
- a *budget* (a longer window: 5,000 an hour, 1,000 a day) is spent freely while at
  least half of it is left (a short run against an hourly quota has no reason to crawl
  at 5000/3600 a second), then what is left is spread over the time left;
- and always a guard: once the requests started since the freshest answer have spent
  what it said was left, no request starts until the window resets (counting requests
  in flight, which the server may have counted since). A window seen to refill dates
  the next reset more precisely than whole-second ``t`` values, and two refills
  measure the window's length, whatever the server's clock says.

Under ``-P`` each worker paces its ``share``. No wait is longer than ``longest_wait``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final, Protocol

from fetchmany.fetch.httpdate import http_date
from fetchmany.fetch.retry import DEFAULT_MAX_BACKOFF

SHORT_WINDOW: Final = 10.0
"""A quota whose window is this short or shorter is a rate, paced evenly; a longer one
is a budget, spent freely while half of it is left."""
HEADROOM: Final = 0.93
"""The share of an announced rate a run uses: slack for arrival jitter, and so that a
window's last few requests are not spent while answers saying so are on their way
(which would stop the run until the reset)."""
_EPOCH: Final = 1e9
"""A reset value past this is a Unix time (2001-09-09), not seconds from now."""
_EPOCH_MS: Final = 1e12
"""... and past this a Unix time in milliseconds."""
_LIES: Final = 3
"""Answers served after a wait for the reset, each saying nothing is left, before a
policy is taken for one the server does not keep."""


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Announced:
    """What one answer said of one quota policy; each part None when it was not said
    (or made no sense)."""

    quota: float | None = None
    """Requests allowed per window."""
    window: float | None = None
    """The window's length in seconds."""
    remaining: float | None = None
    """Requests left in the current window."""
    reset: float | None = None
    """Seconds until the current window resets."""
    name: str = ""
    """The policy's name (IETF fields); one server may announce several."""

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
    if not text or len(text) > 32 or not text.isascii():  # fullwidth digits are no number
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


def read_announced(headers: Headers, now: float | None = None) -> tuple[Announced, ...]:
    """The quota policies an answer announces (none: empty). A reset given as a Unix
    time is read against the server's own clock (its ``Date``) when it sends one: a
    clock of ours a few seconds off would otherwise stretch every wait by as much."""
    wall = time.time() if now is None else now
    state = headers.get("RateLimit")
    if state is not None or headers.get("RateLimit-Limit") is None:
        found = _structured(headers.get("RateLimit-Policy"), state, wall)
        if found:
            return found
    for prefix in ("RateLimit-", "X-RateLimit-"):
        limit_text = headers.get(prefix + "Limit")
        remaining = _remaining(_plain(headers.get(prefix + "Remaining")))
        reset_text = _plain(headers.get(prefix + "Reset"))
        if reset_text is not None and reset_text >= _EPOCH and now is None:
            wall = _server_clock(headers.get("Date"), wall)
        reset = _reset(reset_text, wall)
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
        return (Announced(quota, window, remaining, reset),)
    return ()


def _server_clock(date: str | None, wall: float) -> float:
    """The server's time by its ``Date`` (whole seconds, so at most a second behind),
    or ours when it sends none that parses."""
    if date is None:
        return wall
    when = http_date(date)
    return wall if when is None else when


def _limit_field(text: str) -> tuple[float | None, float | None]:
    """``100`` or ``100, 100;w=10`` (earlier drafts): the quota and its window, if said."""
    from http_sfv.list import List

    parsed = List()
    try:
        parsed.parse(_field_bytes(text))
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


def _field_bytes(text: str) -> bytes:
    """A structured field's bytes; one beyond ASCII does not parse (RFC 9651 3)."""
    if not text.isascii():
        raise ValueError("not ASCII")
    return text.encode("ascii")


def _structured(
    policy_text: str | None, state_text: str | None, wall: float
) -> tuple[Announced, ...]:
    """The IETF fields: each policy, with its current state."""
    from http_sfv.list import List

    policies: dict[str, tuple[float, float | None]] = {}
    if policy_text is not None:
        parsed = List()
        try:
            parsed.parse(_field_bytes(policy_text))
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
        try:
            states = _states(_field_bytes(state_text), wall)
        except ValueError:
            states = {}
    found = []
    for name in sorted(set(policies) | set(states)):
        quota, window = policies.get(name, (None, None))
        remaining, reset = states.get(name, (None, None))
        if quota is not None or remaining is not None:
            found.append(Announced(quota, window, remaining, reset, name))
    return tuple(found)


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


class _Policy:
    """What is known of one policy of one host: its window, its quota, and the freshest
    word on what is left."""

    __slots__ = (
        "budget",
        "counted",
        "distrusted",
        "known_from",
        "longest_reset",
        "quota",
        "refilled",
        "remaining",
        "reset_at",
        "served_spent",
        "waited_from",
        "window",
        "window_seen",
    )

    def __init__(self) -> None:
        self.quota: float | None = None
        self.window: float | None = None
        """The window's length as announced (``w``)."""
        self.window_seen: float | None = None
        """The window's length as measured between two refills."""
        self.longest_reset = 0.0
        self.remaining: float | None = None
        self.budget: float | None = None
        """Starts this process may make before the reset, counted from ``counted``."""
        self.counted = 0
        self.known_from = -1
        self.reset_at = 0.0
        self.refilled: float | None = None
        """When a window was last seen to begin (what was left jumped up)."""
        self.waited_from: int | None = None
        """The first start that waited for this policy's reset (or the longest wait)."""
        self.served_spent = 0
        self.distrusted = False
        """It said nothing was left, and went on serving past its reset: a policy the
        server does not keep is ignored rather than obeyed at a crawl."""

    def length(self) -> float | None:
        """The window's length: announced, else measured, else the longest reset seen
        (a window's first answer shows its length)."""
        if self.window is not None:
            return self.window
        if self.window_seen is not None:
            return self.window_seen
        if self.longest_reset:
            return max(1.0, math.ceil(self.longest_reset))
        return None


AGE: Final = 0.05
"""How old, as a share of its window, an answer may be when it arrives: it was made
before it crossed the network and waited to be read."""
OLDEST_ANSWER: Final = 1.0
"""...and at most this many seconds, whatever the window: an hour's window is not
taken to have ended minutes ago on an answer's word."""


class QuotaPacer:
    """One host's pacing under the quotas it announces (see the module docstring).

    ``reserve`` is called once per request start and says how long to wait first;
    ``learn`` once per answer that announced a quota, with the start number
    ``reserve`` gave the request it answers.
    """

    def __init__(self, share: float = 1.0, longest_wait: float = DEFAULT_MAX_BACKOFF) -> None:
        self._share = share
        self._longest_wait = longest_wait
        self._policies: dict[str, _Policy] = {}
        self._last = 0.0
        self._starts = 0
        self.rate: float | None = None
        """The rate paced at last, requests per second (this process's share)."""
        self.paced_until = 0.0
        """Until when a request waited for a quota (for the display)."""

    @property
    def active(self) -> bool:
        return bool(self._policies)

    def reserve(self, now: float) -> tuple[int, float]:
        """A start number for the next request, and how long it must wait to start."""
        start = now
        rate: float | None = None
        for policy in self._policies.values():
            if policy.distrusted:
                continue
            at, paced = self._earliest(policy, now)
            if at > start:
                start, rate = at, paced
        start = min(start, now + self._longest_wait)
        self._starts += 1
        self._last = start
        if start > now:
            self.paced_until = start
            self.rate = rate
        return self._starts, start - now

    def _earliest(self, policy: _Policy, now: float) -> tuple[float, float | None]:
        """When ``policy`` lets the next request start, and the rate that says so."""
        length = policy.length()
        at = now
        left = None
        if policy.budget is not None and now < policy.reset_at:
            left = policy.budget - (self._starts - policy.counted)
            if left <= 0:  # spent: not before the reset (and then no burst either)
                if policy.waited_from is None:
                    policy.waited_from = self._starts + 1
                at = policy.reset_at
        rate = None
        if policy.quota is not None and length is not None and length <= SHORT_WINDOW:
            rate = policy.quota / length * self._share * HEADROOM
        elif left is not None and left > 0:
            quota = policy.quota if policy.quota is not None else policy.remaining
            if quota is not None and left < quota * self._share / 2:
                rate = left * HEADROOM / max(policy.reset_at - now, 1e-3)
        if rate is not None:
            at = max(at, self._last + 1 / rate)
        return at, rate

    def learn(self, number: int, announced: Announced, now: float, served: bool = True) -> None:
        """An answer to the request started as ``number`` announced ``announced``;
        ``served``: it was not rejected."""
        policy = self._policies.get(announced.name)
        if policy is None:
            policy = self._policies[announced.name] = _Policy()
        if (
            served
            and announced.remaining == 0
            and policy.waited_from is not None
            and number >= policy.waited_from
        ):
            # Nothing left, it said; we waited for the reset it gave (or as long as we
            # wait for anything), and it served, and says nothing is left again. Once
            # is an honest last request; again and again, a quota it does not keep.
            policy.served_spent += 1
            policy.distrusted = policy.served_spent >= _LIES
        if announced.reset is not None:
            policy.longest_reset = max(policy.longest_reset, announced.reset)
        if announced.window is not None:
            policy.window = announced.window
        if announced.quota is not None:
            policy.quota = announced.quota
        remaining = announced.remaining
        if remaining is None or number <= policy.known_from:
            return
        # The freshest word on what is left: every request started after the one it
        # answers may already have been counted against it.
        if (
            policy.remaining is not None
            and remaining > policy.remaining + 2  # not two requests served out of order
            and remaining >= (policy.quota or 0.0) / 2
        ):
            if policy.refilled is not None and now - policy.refilled > 0.5:
                policy.window_seen = now - policy.refilled
            policy.refilled = now  # a window began, at the latest now
        if remaining > 0:
            policy.waited_from = None
            policy.served_spent = 0
        policy.remaining = remaining
        policy.known_from = number
        policy.budget = remaining * self._share
        policy.counted = number
        length = policy.length()
        reset = announced.reset if announced.reset is not None else length
        reset_at = now + (reset if reset is not None else 1.0)
        if length is not None and policy.refilled is not None:
            # Whole seconds (``t=1``) may overstate the time to the reset by almost a
            # second, and a server's clock may be off: a window seen to begin gives its
            # phase, and the reset is the first window end after the answer was made.
            # That was a little before now: an answer arriving just after a window's
            # end (as reckoned from a refill seen late) speaks of the window before, so
            # an end within ``AGE`` of the window's length (``OLDEST_ANSWER`` at most)
            # before now is the reset (and has passed), not the one after it, a whole
            # idle window later.
            made = now - min(AGE * length, OLDEST_ANSWER)
            ends = policy.refilled + length * math.ceil((made - policy.refilled) / length)
            reset_at = min(reset_at, ends if ends > made else ends + length)
        policy.reset_at = reset_at  # (a wait for it is capped in ``reserve``)

    def charge(self, count: int) -> None:
        """Requests that went out without a reservation (redirect hops to this host):
        counted as spent."""
        self._starts += count
