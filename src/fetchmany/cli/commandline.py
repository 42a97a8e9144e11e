"""The parsed command line: ``CommandLine``, one typed field per option of
``cli/options.py``, and how it becomes the library's ``FetchOptions``.

Its own module so that ``--help`` and ``--version``, which click answers while parsing,
never build it: a frozen dataclass of fifty-odd fields costs about 3 ms to define.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetchmany.checks import ALL_HEADERS
from fetchmany.fetch.retry import DEFAULT_RETRY_ON, RetryPolicy
from fetchmany.fields import BodyMode
from fetchmany.options import DEFAULT_BODY, DEFAULT_MAX_BODY_SIZE, Adaptive, FetchOptions

if TYPE_CHECKING:
    from fetchmany.fetch.picks import Pick
    from fetchmany.input.sources import Shard


def _names(fields: tuple[str, ...] | None, name: str) -> bool:
    """Whether --fields names ``name`` (which turns its option on)."""
    return fields is not None and name in fields


@dataclass(frozen=True, slots=True)
class CommandLine:
    """The parsed command line: one typed field per option, named as click names it.

    ``cli`` builds it with ``CommandLine(inputs=..., **params)``, so an option declared
    above without a field here (or the reverse) fails on the first run, in any test.
    None means "not given": the owner's default applies.
    """

    inputs: tuple[str, ...]
    template: str | None
    input_format: str | None
    dedupe: bool
    limit: int | Adaptive
    per_host: int | None
    rate: float | None
    window: int | None
    window_bytes: int
    retries: int
    retry_on: frozenset[int] | None
    backoff: float
    max_backoff: float
    retry_all_methods: bool
    method: str | None
    head: bool
    data: str | None
    json: str | None
    header: tuple[tuple[str, str], ...]
    user_agent: str
    timeout: float
    connect_timeout: float
    max_time: float | None
    location: bool | None
    max_redirects: int
    max_body_size: int | None
    insecure: bool
    proxy: str | None
    netrc: bool
    ca_bundle: str | None
    output: str | None
    format: str | None
    fields: tuple[str, ...] | None
    timings: bool
    response_headers: frozenset[str] | None
    redirects: bool
    tls: bool
    pick: tuple[Pick, ...]
    save_dir: str | None
    save_name: str
    body: str | None
    unordered: bool
    resume: bool
    refresh: str | None
    csv_safe: bool
    shard: Shard | None
    shard_by: str
    processes: int
    merge: bool
    allow_gaps: bool
    expect: int | None
    grace: float
    uvloop: bool
    progress: bool | None
    quiet: bool

    def fetch_options(
        self, method: str, content_type: str | None, accept: str | None
    ) -> FetchOptions:
        """The library's options; ``ValueError`` for a combination it refuses."""
        return FetchOptions(
            limit=self.limit.ceiling if isinstance(self.limit, Adaptive) else self.limit,
            adaptive=self.limit if isinstance(self.limit, Adaptive) else None,
            window=self.window,
            window_bytes=self.window_bytes,
            timings=self.timings or _names(self.fields, "timings"),
            response_headers=self.response_headers
            if self.response_headers is not None or not _names(self.fields, "headers")
            else ALL_HEADERS,
            redirects=self.redirects or _names(self.fields, "redirects"),
            tls=self.tls or _names(self.fields, "tls"),
            ordered=not self.unordered,
            method=method,
            headers=self.header,
            user_agent=self.user_agent,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            max_time=self.max_time,
            max_redirects=self.max_redirects,
            verify_tls=not self.insecure,
            body=BodyMode(self.body.lower()) if self.body else DEFAULT_BODY,
            max_body_size=(
                DEFAULT_MAX_BODY_SIZE if self.max_body_size is None else self.max_body_size
            ),
            retry=RetryPolicy(
                retries=self.retries,
                retry_on=DEFAULT_RETRY_ON if self.retry_on is None else self.retry_on,
                backoff=self.backoff,
                max_backoff=self.max_backoff,
                retry_all_methods=self.retry_all_methods,
            ),
            rate=self.rate,
            per_host=self.per_host,
            ca_bundle=self.ca_bundle,
            content_type=content_type,
            accept=accept,
            proxy=self.proxy,
            netrc=self.netrc,
            picks=self.pick,
            save_dir=self.save_dir,
            save_name=self.save_name,
            dedupe=self.dedupe,
        )
