"""The options of a run, as one typed, validated object shared by the CLI and the library.

This module owns the default of every setting of a fetch (the retry policy's live
in ``fetch/retry.py``, which owns it): the command line's declarations read them
from here, so each default is written once. It is imported by ``--help``, so it
stays light: nothing here imports aiohttp, orjson or rich.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from fetchmany._version import __version__
from fetchmany.fetch.retry import RetryPolicy
from fetchmany.records import BodyMode
from fetchmany.redaction import MASK, redact_url

if TYPE_CHECKING:
    from fetchmany.fetch.picks import Pick

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
ALL_HEADERS: Final = frozenset({"*"})
"""``--response-headers all``."""
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
        _whole("the ceiling of --limit auto", self.ceiling, 1)
        _whole("the start of --limit auto", self.start, 1)
        if not (_positive(self.share) and self.share <= 1):
            raise ValueError(f"the share of --limit auto must be in (0, 1], got {self.share!r}")

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
_VALUE_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as a header value (RFC 9110 5.5), or None."""
    if (bad := _VALUE_CONTROL.search(value)) is not None:
        return f"contains a control character ({bad.group()!r})"
    return None


def _positive(value: object) -> bool:
    """A positive, finite number (NaN, infinity, None and text are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _whole(name: str, value: object, least: int, most: int | None = None) -> None:
    """A setting that must be a whole number in range: a ValueError naming it otherwise
    (2.5, NaN, infinity or "5" would fail later, deep in a run, or never be a bound)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise ValueError(f"{name} must be {bound}, got {value}")


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Everything that shapes how items are fetched and turned into records.

    Validation happens here, once, so the CLI and library callers get the same
    errors (``ValueError`` with a message fit to show a user).
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
    """None: GET, or POST when a body template is given (``policy.plan_request``)."""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold a token
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = DEFAULT_TIMEOUT
    """Seconds for one whole attempt: connect, send, headers and body."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
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
    sets one; None: ``DEFAULT_ACCEPT``. Settled with the method by
    ``policy.plan_request``."""
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

    def __post_init__(self) -> None:
        _whole("limit", self.limit, 1, MAX_LIMIT)
        if self.window is not None:
            _whole("window", self.window, 1)
        _whole("window bytes", self.window_bytes, 1)
        _whole("max redirects", self.max_redirects, 0)
        _whole("max body size", self.max_body_size, 0)
        if self.per_host is not None:
            _whole("per-host limit", self.per_host, 1)
        if not isinstance(self.user_agent, str) or header_value_problem(self.user_agent):
            raise ValueError("user agent must be text without control characters")
        for header in self.headers:
            if (
                not isinstance(header, tuple)
                or len(header) != 2
                or not all(
                    isinstance(part, str) and not header_value_problem(part) for part in header
                )
            ):
                raise ValueError(
                    "headers must be (name, value) pairs of text without control characters"
                )
        if self.method is not None and not isinstance(self.method, str):
            raise ValueError("method must be text such as GET or POST")
        if not _positive(self.timeout):
            raise ValueError(f"timeout must be a positive number, got {self.timeout}")
        if not _positive(self.connect_timeout):
            raise ValueError(
                f"connect timeout must be a positive number, got {self.connect_timeout}"
            )
        if self.rate is not None and not _positive(self.rate):
            raise ValueError(f"rate must be positive, got {self.rate}")
        schemes = tuple(f"{scheme}://" for scheme in PROXY_SCHEMES)
        if self.proxy is not None and (
            not isinstance(self.proxy, str) or not self.proxy.lower().startswith(schemes)
        ):
            shown = redact_url(str(self.proxy))
            if "@" in shown:  # no scheme to tell a userinfo by (user:pw@host): mask up to @
                shown = f"{MASK}@{shown.rsplit('@', 1)[1]}"
            raise ValueError(f"proxy must be an http(s):// or socks:// URL, got {shown!r}")
        if self.method is not None:
            if not self.method or not self.method.isascii() or not self.method.isalpha():
                raise ValueError(f"not an HTTP method: {self.method!r}")
            object.__setattr__(self, "method", self.method.upper())
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
