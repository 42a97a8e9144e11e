"""The options of a run, as one typed, validated object shared by the CLI and the library.

This module owns the default of every setting of a fetch (the retry policy's live
in ``fetch/retry.py``, which owns it): the command line's declarations read them
from here, so each default is written once. It is imported by ``--help``, so it
stays light: nothing here imports aiohttp, orjson or rich.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from fetchmany._version import __version__
from fetchmany.fetch.retry import RetryPolicy
from fetchmany.records import BodyMode
from fetchmany.redaction import redact_url

if TYPE_CHECKING:
    from fetchmany.fetch.picks import Pick

DEFAULT_LIMIT: Final = 10
DEFAULT_METHOD: Final = "GET"
"""Without a body; ``fetch/policy.py`` makes it POST when there is one."""
DEFAULT_USER_AGENT: Final = f"fetchmany/{__version__}"
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


@dataclass(frozen=True, slots=True)
class Adaptive:
    """The settings of ``--limit auto[:MAX]`` (the controller is ``fetch/adaptive.py``)."""

    ceiling: int = DEFAULT_CEILING
    """The most any host's limit may reach, and the cap on all requests in flight."""
    start: int = DEFAULT_START
    """Where each host's limit starts (a ``-P`` worker starts at its share)."""

    @classmethod
    def parse(cls, text: str) -> Adaptive:
        _, colon, ceiling = text.partition(":")
        if not colon:
            return cls()
        try:
            value = int(ceiling)
        except ValueError:
            raise ValueError(f"expected auto or auto:MAX, got {text!r}") from None
        if value < 1:
            raise ValueError(f"the ceiling of --limit auto must be at least 1, got {value}")
        return cls(value)


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
    headers: tuple[tuple[str, str], ...] = ()
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
    proxy: str | None = None
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

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")
        if self.window_bytes < 1:
            raise ValueError(f"window bytes must be at least 1, got {self.window_bytes}")
        if not 0 < self.timeout < math.inf:  # written so that nan fails too
            raise ValueError(f"timeout must be a positive number, got {self.timeout}")
        if not 0 < self.connect_timeout < math.inf:
            raise ValueError(
                f"connect timeout must be a positive number, got {self.connect_timeout}"
            )
        if self.max_redirects < 0:
            raise ValueError(f"max redirects cannot be negative, got {self.max_redirects}")
        if self.max_body_size < 0:
            raise ValueError(f"max body size cannot be negative, got {self.max_body_size}")
        if self.rate is not None and not 0 < self.rate < math.inf:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.per_host is not None and self.per_host < 1:
            raise ValueError(f"per-host limit must be at least 1, got {self.per_host}")
        schemes = tuple(f"{scheme}://" for scheme in PROXY_SCHEMES)
        if self.proxy is not None and not self.proxy.lower().startswith(schemes):
            shown = redact_url(self.proxy)
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
        window = self.effective_window
        return size if window is None else min(size, window)
