"""The options of a run, as one typed, validated object shared by the CLI and the library.

This module owns the default of every setting of a fetch (the retry policy's live
in ``fetch/retry.py``, which owns it): the command line's declarations read them
from here, so each default is written once. It is imported by ``--help``, so it
stays light: nothing here imports aiohttp, orjson or rich.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

from fetchmany._version import __version__
from fetchmany.checks import (
    flag,
    header_names,
    header_text,
    headers,
    named,
    optional,
    path,
    rate,
    seconds,
    shown,
    size,
    text,
    whole,
)
from fetchmany.fetch.picks import Pick, checked_picks
from fetchmany.fetch.retry import RetryPolicy
from fetchmany.fields import BodyMode
from fetchmany.redaction import redact_proxy

T = TypeVar("T")

DEFAULT_LIMIT: Final = 10
DEFAULT_METHOD: Final = "GET"
"""Without a body; ``fetch/policy.py`` makes it POST when there is one."""
DEFAULT_USER_AGENT: Final = f"fetchmany/{__version__}"
DEFAULT_ACCEPT: Final = "*/*"
"""Accept of a request unless -H sets one; ``--json`` asks for JSON instead."""
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_MAX_REDIRECTS: Final = 10
DEFAULT_MAX_BODY_SIZE: Final = 10 * 1000 * 1000
DEFAULT_BODY: Final = BodyMode.AUTO
DEFAULT_SAVE_NAME: Final = "{index}{ext}"
PROXY_SCHEMES: Final = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
"""What --proxy (and the proxy variables) may name; the socks ones go through aiohttp-socks."""
DEFAULT_CEILING: Final = 256
"""--limit auto's ceiling unless auto:MAX gives one."""
DEFAULT_START: Final = 10
"""Where --limit auto starts every host's limit (the fixed default), unless the ceiling
is lower."""
DEFAULT_WINDOW_BYTES: Final = 32 * 1024 * 1024
"""What records waiting for their turn in the output may hold, encoded, at most."""
POOL_PER_SLOT: Final = 4
MIN_POOL: Final = 256
"""Workers beyond ``limit`` exist only while items park (a backoff, a busy host);
at most max(POOL_PER_SLOT x limit, MIN_POOL) of them, and never more than --window."""
PARKED_COST: Final = 4096
"""What a worker parked on a host's limit holds (its task and frames, measured at about
3 KB, and its item): with per-host limits the pool may grow to --window-bytes' worth of
them, so that the items of one slow host cannot take every worker from the others."""


@dataclass(frozen=True, slots=True)
class Adaptive:
    """The settings of ``--limit auto[:MAX]`` (the controller is ``fetch/adaptive.py``)."""

    ceiling: int = DEFAULT_CEILING
    """The most any host's limit may reach, and the cap on all requests in flight."""
    start: int = DEFAULT_START
    """Where each host's limit starts (a ``-P`` worker starts at its share)."""
    share: float = 1.0
    """This process's share of the run (``1/N`` in a ``-P N`` worker): of the probe's
    concurrency and of an announced quota."""

    def __post_init__(self) -> None:
        named("the ceiling of --limit auto", at_least_one, self.ceiling)
        named("the start of --limit auto", at_least_one, self.start)
        share = self.share
        if not (isinstance(share, int | float) and not isinstance(share, bool) and 0 < share <= 1):
            raise ValueError(f"the share of --limit auto must be in (0, 1], got {shown(share)}")

    @classmethod
    def parse(cls, text: str) -> Adaptive:
        _, colon, ceiling = text.partition(":")
        if not colon:
            return cls()
        try:
            value = int(ceiling)
        except ValueError:
            raise ValueError(f"expected auto or auto:MAX, got {text!r}") from None
        return cls(value)  # checked there, as for a library caller


MAX_LIMIT: Final = 100_000
"""The most requests in flight a run may ask for (each holds a socket and a task)."""


def limit(value: object) -> int:
    return whole(value, 1, MAX_LIMIT)


def at_least_one(value: object) -> int:
    return whole(value, 1)


def at_least_zero(value: object) -> int:
    return whole(value, 0)


def window_size(value: object) -> int:
    """``--window-bytes``: a size, of at least a byte."""
    return whole(size(value), 1)


def timeout_seconds(value: object) -> float:
    return seconds(value, zero=False)


def body_mode(value: object) -> BodyMode:
    if not isinstance(value, str):
        raise TypeError(f"must be a BodyMode or its name, got {shown(value)}")
    try:
        return BodyMode(value.lower())
    except ValueError:
        choices = ", ".join(mode.value for mode in BodyMode)
        raise ValueError(f"must be one of {choices}; got {value!r}") from None


def method(value: object) -> str:
    """An HTTP method, upper-cased: letters only (a token with no room for a surprise)."""
    value = text(value)
    if not value or not value.isascii() or not value.isalpha():
        raise ValueError(f"not an HTTP method: {value!r}")
    return value.upper()


def proxy(value: object) -> str:
    schemes = tuple(f"{scheme}://" for scheme in PROXY_SCHEMES)
    if not isinstance(value, str) or not value.lower().startswith(schemes):
        hidden = redact_proxy(str(value))
        raise ValueError(f"must be an http(s):// or socks:// URL, got {hidden!r}")
    return value


def user_agent(value: object) -> str:
    try:
        return header_text(value)
    except ValueError:
        raise ValueError("must be text without control characters") from None


def _kind(kind: type[T], what: str) -> Callable[[object], T]:
    def check(value: object) -> T:
        if not isinstance(value, kind):
            raise TypeError(f"must be {what}, got {shown(value)}")
        return value

    return check


if TYPE_CHECKING:
    HeadersGiven = Mapping[str, str] | Iterable[tuple[str, str]]
    PicksGiven = Iterable[Pick | str] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Everything that shapes how items are fetched and turned into records.

    Takes plain Python: ``headers`` as a mapping (``{"Accept": "application/json"}``)
    or (name, value) pairs, ``rate`` as a number per second or text (``"10/s"``,
    ``"600/m"``), sizes as bytes or text (``"10MB"``), ``body`` as a ``BodyMode`` or
    its name, ``picks`` as ``"NAME=PATH"`` texts; each is made the field's type here,
    once. Every value is checked here, by the same checks the command line uses: one of
    the wrong kind is a ``TypeError``, one out of range (or a combination refused) a
    ``ValueError``, each naming the setting and what it takes.
    """

    limit: int = DEFAULT_LIMIT
    """Hard cap on requests in flight at any moment (with ``adaptive``, its ceiling)."""
    adaptive: Adaptive | None = None
    """``--limit auto``: each host's limit moves with its answers, up to ``limit``."""
    window: int | None = None
    """Items that may be started but not yet emitted, at most; ``None``: no count, only
    ``window_bytes`` bounds them."""
    window_bytes: int = DEFAULT_WINDOW_BYTES
    """What the started but not yet emitted items may hold (see ``engine.py``)."""
    ordered: bool = True
    method: str | None = None
    """None: GET, or POST when a body template is given (as ``fetch_many`` settles it)."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold a token
    """Extra request headers, in the order given; a mapping is taken as its items."""
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = DEFAULT_TIMEOUT
    """Seconds for one whole attempt: connect, send, headers and body."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_time: float | None = None
    """Seconds an item may take, all its attempts and backoffs together (``--max-time``):
    an attempt in flight then is cut, a backoff that would end later is not taken, and
    the record is a ``timeout`` saying so. None: no deadline."""
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    """0 disables following redirects: the 3xx response itself becomes the record."""
    verify_tls: bool = True
    body: BodyMode = DEFAULT_BODY
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate: float | None = None
    """Request starts per second across all workers (retries included); None: unlimited."""
    per_host: int | None = None
    """In-flight cap per host, on top of ``limit``."""
    ca_bundle: str | None = None
    """PEM file of CA certificates to trust instead of the system's."""
    content_type: str | None = None
    """Content-Type of request bodies (from ``-d``/``--json``), unless a header sets one."""
    accept: str | None = None
    """Accept of every request (``application/json`` with ``--json``), unless a header
    sets one; None: ``DEFAULT_ACCEPT``. ``fetch_many`` settles it with the method."""
    proxy: str | None = field(default=None, repr=False)  # may hold a password
    """Proxy for every request; None uses HTTP(S)_PROXY/NO_PROXY from the environment."""
    env_proxy: bool = True
    netrc: bool = False
    """Basic auth from .netrc ($NETRC or ~/.netrc) for the hosts listed there."""
    picks: tuple[Pick, ...] = ()
    save_dir: str | None = None
    save_name: str = DEFAULT_SAVE_NAME
    dedupe: bool = False
    """Fetch each distinct URL once; every item still gets its own record."""
    timings: bool = False
    """Record the phases of the final attempt (``timings``); off, the hot path pays nothing."""
    response_headers: frozenset[str] | None = None
    """Response headers to record (lower-case names; ``ALL_HEADERS`` for all); None: none."""
    redirects: bool = False
    """Record the redirect chain (``redirects``)."""
    tls: bool = False
    """Record the final connection's TLS facts (``tls``); off, the request path pays
    nothing (no hook on the connection, no branch per answer beyond the one above)."""

    if TYPE_CHECKING:  # what a caller may give; __post_init__ makes it the fields' types

        def __init__(
            self,
            *,
            limit: int = ...,
            adaptive: Adaptive | None = ...,
            window: int | None = ...,
            window_bytes: int | str = ...,
            ordered: bool = ...,
            method: str | None = ...,
            headers: HeadersGiven = ...,
            user_agent: str = ...,
            timeout: float = ...,
            connect_timeout: float = ...,
            max_time: float | None = ...,
            max_redirects: int = ...,
            verify_tls: bool = ...,
            body: BodyMode | str = ...,
            max_body_size: int | str = ...,
            retry: RetryPolicy = ...,
            rate: float | str | None = ...,
            per_host: int | None = ...,
            ca_bundle: str | os.PathLike[str] | None = ...,
            content_type: str | None = ...,
            accept: str | None = ...,
            proxy: str | None = ...,
            env_proxy: bool = ...,
            netrc: bool = ...,
            picks: PicksGiven = ...,
            save_dir: str | os.PathLike[str] | None = ...,
            save_name: str = ...,
            dedupe: bool = ...,
            timings: bool = ...,
            response_headers: Iterable[str] | None = ...,
            redirects: bool = ...,
            tls: bool = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, named(name, check, getattr(self, name)))
        if self.http_method == "HEAD" and self.save_dir is not None:
            # An answer to HEAD has no body: every saved file would be empty.
            raise ValueError("HEAD answers have no body to save; drop --save-dir or -X HEAD")

    @property
    def http_method(self) -> str:
        return self.method or DEFAULT_METHOD

    @property
    def effective_window(self) -> int | None:
        """The count cap of the reorder window, if any: never below ``limit`` (or the
        pool could not fill)."""
        if self.window is not None:
            return max(self.window, self.limit)
        return None

    @property
    def pool_size(self) -> int:
        """Workers at most: ``limit`` fetching, and room for items parked meanwhile."""
        size = max(POOL_PER_SLOT * self.limit, MIN_POOL)
        if self.adaptive is not None or self.per_host is not None:
            size = max(size, self.window_bytes // PARKED_COST)
        window = self.effective_window
        return size if window is None else min(size, window)


_CHECKS: Final[dict[str, Callable[[object], object]]] = {
    "limit": limit,
    "adaptive": optional(_kind(Adaptive, "an Adaptive (for --limit auto) or None")),
    "window": optional(at_least_one),
    "window_bytes": window_size,
    "ordered": flag,
    "method": optional(method),
    "headers": headers,
    "user_agent": user_agent,
    "timeout": timeout_seconds,
    "connect_timeout": timeout_seconds,
    "max_time": optional(timeout_seconds),
    "max_redirects": at_least_zero,
    "verify_tls": flag,
    "body": body_mode,
    "max_body_size": size,
    "retry": _kind(RetryPolicy, "a RetryPolicy"),
    "rate": optional(rate),
    "per_host": optional(at_least_one),
    "ca_bundle": optional(path),
    "content_type": optional(header_text),
    "accept": optional(header_text),
    "proxy": optional(proxy),
    "env_proxy": flag,
    "netrc": flag,
    "picks": checked_picks,
    "save_dir": optional(path),
    "save_name": text,
    "dedupe": flag,
    "timings": flag,
    "response_headers": optional(header_names),
    "redirects": flag,
    "tls": flag,
}
"""Each field's check, in the order of the fields: the first wrong one is the one named."""
