"""The command-line options: declarations, value parsing, and help grouped under headings.

Declarations live here so ``command.py`` stays the wiring between parsed values and
the library. Every default is read from the module that owns it (``options.py`` for
a fetch's settings, ``fetch/retry.py`` for the retry policy; the command's own
settings are owned here). Parsing callbacks turn text into typed values and raise
``click.BadParameter`` with a message a user can act on; ``CommandLine`` is the one
typed object the parsed values become.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from click.core import ParameterSource

from fetchmany.fetch.retry import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_ON,
    RetryPolicy,
)
from fetchmany.options import (
    ALL_HEADERS,
    DEFAULT_BODY,
    DEFAULT_CEILING,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_LIMIT,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_SAVE_NAME,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    DEFAULT_WINDOW_BYTES,
    Adaptive,
    FetchOptions,
    header_value_problem,
)
from fetchmany.records import (
    ERROR_MESSAGE_COLUMN,
    FIELDS,
    OPTIONAL_FIELDS,
    SAVED_FIELDS,
    BodyMode,
)
from fetchmany.redaction import MASK, redact_header

if TYPE_CHECKING:
    from fetchmany.fetch.picks import Pick
    from fetchmany.input.sources import Shard

DEFAULT_GRACE: Final = 2.0
"""After the first Ctrl-C or SIGTERM, how long requests in flight may still finish."""

F = TypeVar("F", bound=Callable[..., Any])

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``500KB``, ``10MB``, ``1GiB`` or a plain byte count → bytes."""
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgib")
    unit = stripped[len(number) :]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (try 500KB, 10MB, 1GB)") from None
    if unit not in _SIZE_UNITS or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a size: {text!r} (try 500KB, 10MB, 1GB)")
    return int(value * _SIZE_UNITS[unit])


class Seconds(click.FloatRange):
    """A duration: a finite number of seconds (``inf`` and ``nan`` parse as floats, and
    would wait forever or compare false with every deadline)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


def format_size(size: int) -> str:
    """Bytes as the shortest decimal unit that is exact: 10000000 -> 10MB."""
    units = (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))
    for unit, factor in (*units, ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from fetchmany.fetch.limits import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _statuses(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> frozenset[int] | None:
    if value is None:
        return None
    codes = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 100 <= int(part) <= 599:
            raise click.BadParameter(f"not an HTTP status: {part!r}")
        codes.add(int(part))
    return frozenset(codes)


def _picks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[Pick, ...]:
    from fetchmany.fetch.picks import parse_pick

    picks = []
    for value in values:
        try:
            picks.append(parse_pick(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    names = [p.name for p in picks]
    taken = {*FIELDS, *SAVED_FIELDS, *OPTIONAL_FIELDS, ERROR_MESSAGE_COLUMN}
    if reserved := sorted(set(names) & taken):
        raise click.BadParameter(
            f"{reserved[0]!r} is a field of every record; give the pick another name"
        )
    if duplicated := sorted({n for n in names if names.count(n) > 1}):
        raise click.BadParameter(f"field name used twice: {duplicated[0]!r}")
    return tuple(picks)


class LinesType(click.types.StringParamType):
    """A string option whose FETCHMANY_* variable holds one value per line (headers have
    spaces, so the usual whitespace split would break them)."""

    envvar_list_splitter = "\n"


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    headers = []
    for value in values:
        from_env = ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT
        if from_env and not value.strip():
            continue  # FETCHMANY_HEADER ending in a newline: no header there
        name, sep, content = value.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise click.BadParameter(f"expected 'Name: value', got {_first_word(value)!r}")
        content = content.strip(" \t")
        if (problem := header_value_problem(content)) is not None:
            shown = f"{name}: {redact_header(name, content)}"
            raise click.BadParameter(f"header value {problem}: {shown!r}")
        headers.append((name, content))
    return tuple(headers)


def _first_word(value: str) -> str:
    """A malformed header as it may be shown: its first word, the rest masked. Without a
    colon there is no telling name from value, and the value may be a secret
    (``-H 'Authorization Bearer s3cret'``)."""
    word = re.split(r"[\s=:]", value.strip(), maxsplit=1)[0][:40]
    return word if word == value else f"{word} {MASK}"


def _user_agent(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if (problem := header_value_problem(value)) is not None:
        raise click.BadParameter(f"User-Agent {problem}: {value!r}")
    return value


def _header_names(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> frozenset[str] | None:
    if value is None:
        return None
    if value.strip().lower() == "all":
        return ALL_HEADERS
    names = frozenset(name.strip().lower() for name in value.split(",") if name.strip())
    if not names or not all(_TOKEN.fullmatch(name) for name in names):
        raise click.BadParameter(f"expected header names (a,b) or all, got {value!r}")
    return names


def _limit(ctx: click.Context, param: click.Parameter, value: str) -> int | Adaptive:
    text = value.strip().lower()
    if text == "auto" or text.startswith("auto:"):
        try:
            return Adaptive.parse(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    try:
        limit = int(text)
    except ValueError:
        raise click.BadParameter(f"expected a number or auto, got {value!r}") from None
    if limit < 1:
        raise click.BadParameter(f"{limit} is not in the range x>=1.")
    return limit


def _processes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    if value.strip().lower() == "auto":
        import os

        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a number of processes or auto, got {value!r}") from None
    if count < 1:
        raise click.BadParameter(f"needs at least 1 process, got {count}")
    return count


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    if value is None:
        return None
    from fetchmany.input.sources import Shard

    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _fields(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """Split only: which names are valid depends on --pick and --save-dir (checked in cli)."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("no fields given")
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise click.BadParameter(f"field {repeated[0]!r} is named twice")
    return names


class GroupedOption(click.Option):
    """An option that knows which help heading it belongs under."""

    def __init__(self, *args: Any, group: str = "Other", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class GroupedCommand(click.Command):
    """A command whose --help lists options under headings, in declaration order."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):
                continue  # INPUTS is described in the command's text
            group = param.group if isinstance(param, GroupedOption) else "Other"
            sections.setdefault(group, []).append(record)
        sections["Other"] = sections.pop("Other", [])
        for group, rows in sections.items():
            with formatter.section(group):
                formatter.write_dl(rows)


def option(*decls: str, group: str, **attrs: Any) -> Callable[[F], F]:
    return click.option(*decls, cls=GroupedOption, group=group, **attrs)


INPUT = "Input"
CONCURRENCY = "Concurrency and politeness"
RETRIES = "Retries"
REQUEST = "Request"
OUTPUT = "Output"
SCALE_OUT = "Scale out"
DISPLAY = "Display"

OPTIONS: list[Callable[[F], F]] = [
    option(
        "-t",
        "--template",
        group=INPUT,
        metavar="URL",
        help="Expand each item into this URL: {} or {id} is a line, {name} a CSV/JSONL column; "
        "values are percent-encoded.",
    ),
    option(
        "--input-format",
        group=INPUT,
        type=click.Choice(["lines", "csv", "jsonl"], case_sensitive=False),
        help="lines: one URL or ID a line; csv: rows with a header; jsonl: one object a line. "
        "Default: from the input names (.csv, .jsonl), else lines.",
    ),
    option(
        "--dedupe",
        group=INPUT,
        is_flag=True,
        help="Fetch identical requests once; every input still gets its own record.",
    ),
    option(
        "-l",
        "-j",
        "--limit",
        "--concurrency",
        "limit",
        group=CONCURRENCY,
        callback=_limit,
        default=str(DEFAULT_LIMIT),
        show_default=True,
        metavar="N|auto[:MAX]",
        help="Requests in flight at most. auto: find each host's capacity from its answers "
        f"(overload answers and latency), up to MAX (default {DEFAULT_CEILING}).",
    ),
    option(
        "--per-host",
        group=CONCURRENCY,
        type=click.IntRange(min=1),
        default=None,
        help="Requests in flight per host at most, on top of --limit.",
    ),
    option(
        "-r",
        "--rate",
        group=CONCURRENCY,
        callback=_rate,
        metavar="RATE",
        help="Request starts per time, evenly spaced, retries included: 20, 20/s, 600/m, 1000/h.",
    ),
    option(
        "--window",
        group=CONCURRENCY,
        type=click.IntRange(min=1),
        default=None,
        help="Items started but not yet written, at most (they wait for an earlier slow one, "
        "or out a backoff). Default: no count; --window-bytes bounds them.",
    ),
    option(
        "--window-bytes",
        group=CONCURRENCY,
        callback=_size,
        metavar="SIZE",
        default=format_size(DEFAULT_WINDOW_BYTES),
        show_default=True,  # the default is the text, parsed like any value
        help="Memory that records waiting for an earlier slow one may hold, encoded; when it "
        "is spent, no new item starts (one record larger than this still gets through).",
    ),
    option(
        "--retries",
        group=RETRIES,
        type=click.IntRange(min=0),
        default=DEFAULT_RETRIES,
        show_default=True,
        help="Retries after a connection error, a timeout or a --retry-on status.",
    ),
    option(
        "--retry-on",
        group=RETRIES,
        callback=_statuses,
        default=None,
        show_default=",".join(map(str, sorted(DEFAULT_RETRY_ON))),
        metavar="CODES",
        help="Statuses that are retried.",
    ),
    option(
        "--backoff",
        group=RETRIES,
        type=Seconds(min=0),
        default=DEFAULT_BACKOFF,
        show_default=True,
        help="First backoff in seconds; doubles each retry, with full jitter.",
    ),
    option(
        "--max-backoff",
        group=RETRIES,
        type=Seconds(min=0),
        default=DEFAULT_MAX_BACKOFF,
        show_default=True,
        help="Longest wait before a retry, Retry-After included.",
    ),
    option(
        "--retry-all-methods",
        group=RETRIES,
        is_flag=True,
        help="Retry non-idempotent methods (POST, PATCH) too.",
    ),
    option(
        "-X",
        "--method",
        group=REQUEST,
        help="HTTP method. Default: GET, or POST when --data or --json is given.",
    ),
    option(
        "-d",
        "--data",
        group=REQUEST,
        metavar="TEMPLATE",
        help="Request body with the same placeholders (values as given); @FILE reads it from a "
        "file. Content-Type: application/x-www-form-urlencoded unless -H sets one.",
    ),
    option(
        "--json",
        group=REQUEST,
        metavar="TEMPLATE",
        help="JSON request body; each placeholder becomes a JSON string: '{\"id\": {id}}'. "
        "@FILE reads it from a file. Content-Type: application/json.",
    ),
    option(
        "-H",
        "--header",
        group=REQUEST,
        multiple=True,
        type=LinesType(),
        callback=_headers,
        metavar="'NAME: VALUE'",
        help="Extra request header; repeatable. Authorization and Cookie are never sent to "
        "another origin after a redirect.",
    ),
    option(
        "-A",
        "--user-agent",
        group=REQUEST,
        default=DEFAULT_USER_AGENT,
        callback=_user_agent,
        show_default=True,
        help="User-Agent header.",
    ),
    option(
        "--timeout",
        group=REQUEST,
        type=Seconds(min=0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds for one whole attempt (connect, headers and body).",
    ),
    option(
        "--connect-timeout",
        group=REQUEST,
        type=Seconds(min=0, min_open=True),
        default=DEFAULT_CONNECT_TIMEOUT,
        show_default=True,
        help="Seconds to establish a connection.",
    ),
    option(
        "--max-redirects",
        group=REQUEST,
        type=click.IntRange(min=0),
        default=DEFAULT_MAX_REDIRECTS,
        show_default=True,
        help="Redirects to follow; 0 records the redirect response itself.",
    ),
    option(
        "--max-body-size",
        group=REQUEST,
        callback=_size,
        default=None,
        show_default=format_size(DEFAULT_MAX_BODY_SIZE),
        metavar="SIZE",
        help="Stop reading a body at this size, decoded (500KB, 10MB, 1GB): body_too_large.",
    ),
    option("-k", "--insecure", group=REQUEST, is_flag=True, help="Do not verify TLS certificates."),
    option(
        "--proxy",
        group=REQUEST,
        metavar="URL",
        help="Proxy for every request: http(s)://, socks5://, socks5h:// (names resolved by the "
        "proxy), socks4://. Default: HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY from the "
        "environment.",
    ),
    option(
        "--netrc",
        group=REQUEST,
        is_flag=True,
        help="Basic auth from .netrc ($NETRC or ~/.netrc) for the hosts it lists.",
    ),
    option(
        "--ca-bundle",
        group=REQUEST,
        type=click.Path(exists=True, dir_okay=False),
        help="PEM file of CA certificates to trust (a private CA).",
    ),
    option(
        "-o",
        "--output",
        group=OUTPUT,
        type=click.Path(dir_okay=False, writable=True),
        help="Write records to this file instead of stdout (replaced only when the run ends).",
    ),
    option(
        "-f",
        "--format",
        group=OUTPUT,
        type=click.Choice(["jsonl", "json", "csv"], case_sensitive=False),
        help="Output format. Default: from the --output extension (.jsonl .ndjson .json .csv), "
        "else jsonl.",
    ),
    option(
        "--fields",
        group=OUTPUT,
        callback=_fields,
        metavar="A,B,...",
        help=f"Fields to emit, in this order. Default: {','.join(FIELDS)}.",
    ),
    option(
        "--timings",
        group=OUTPUT,
        is_flag=True,
        help="Record a timings field: dns_ms, connect_ms, tls_ms, ttfb_ms, total_ms of the "
        "final attempt (null for a phase that did not happen).",
    ),
    option(
        "--response-headers",
        group=OUTPUT,
        callback=_header_names,
        metavar="NAME,...|all",
        help="Record a headers field with these response headers (lower-case names; "
        "repeats comma-joined, set-cookie a list).",
    ),
    option(
        "--redirects",
        group=OUTPUT,
        is_flag=True,
        help="Record a redirects field: the chain of {status, url} before the final URL.",
    ),
    option(
        "--tls",
        group=OUTPUT,
        is_flag=True,
        help="Record a tls field for https answers: version, cipher, subject, san, issuer, "
        "not_before, not_after, days_left of the final connection's certificate.",
    ),
    option(
        "--pick",
        group=OUTPUT,
        multiple=True,
        callback=_picks,
        metavar="NAME=PATH",
        help="Put a value from the JSON body into field NAME: keys and list indexes, as in "
        "0.title or data.items.2.id (missing: null). Repeatable. Fields become input and the "
        "picks, and the body is left out unless --body or --fields asks for it.",
    ),
    option(
        "--save-dir",
        group=OUTPUT,
        type=click.Path(file_okay=False),
        help="Stream each body to a file in this directory; records get path and sha256 "
        "instead of body.",
    ),
    option(
        "--save-name",
        group=OUTPUT,
        default=DEFAULT_SAVE_NAME,
        show_default=True,
        metavar="TEMPLATE",
        help="File name in --save-dir: {index} (zero-padded), {ext} (from the content type), "
        "{} or {id}, {column}. Sanitised: never outside the directory.",
    ),
    option(
        "--body",
        group=OUTPUT,
        type=click.Choice([m.value for m in BodyMode], case_sensitive=False),
        default=None,
        show_default=DEFAULT_BODY.value,
        help="auto: parsed JSON for JSON types, text for text types, base64 otherwise.",
    ),
    option(
        "--unordered",
        group=OUTPUT,
        is_flag=True,
        help="Write records as they complete, not in input order.",
    ),
    option(
        "--resume",
        group=OUTPUT,
        is_flag=True,
        help="Continue --output: skip inputs whose records it already holds, append the rest.",
    ),
    option(
        "--refresh",
        group=OUTPUT,
        type=click.Path(exists=True, dir_okay=False),
        metavar="PREVIOUS",
        help="PREVIOUS is an earlier output of these inputs (any format; may be --output "
        "itself): ask each item conditionally (If-None-Match, If-Modified-Since from its "
        "etag and last_modified) and keep its record when the answer is 304 Not Modified.",
    ),
    option(
        "--csv-safe",
        group=OUTPUT,
        is_flag=True,
        help="In CSV, prefix cells starting with = + - @ with ' so spreadsheets do not run them.",
    ),
    option(
        "--shard",
        group=SCALE_OUT,
        callback=_shard,
        metavar="K/N",
        help="Fetch only the items whose index mod N is K (K from 0, as Kubernetes' "
        "JOB_COMPLETION_INDEX); records keep their index in the whole input, for --merge.",
    ),
    option(
        "--shard-by",
        group=SCALE_OUT,
        type=click.Choice(["index", "host"], case_sensitive=False),
        default="index",
        show_default=True,
        help="With --shard: host puts every item of one host (scheme, host, port) in one "
        "shard, so --per-host, --limit auto and a host's quota hold for the whole job.",
    ),
    option(
        "-P",
        "--processes",
        group=SCALE_OUT,
        callback=_processes,
        default="1",
        show_default=True,
        metavar="N|auto",
        help="Worker processes on this machine, each a shard, merged in order into the one "
        "output; auto: one per core. --limit, --rate and --per-host stay totals.",
    ),
    option(
        "--merge",
        group=SCALE_OUT,
        is_flag=True,
        help="INPUTS are record files (shard outputs, any format): write them as one output "
        "in index order, fetching nothing.",
    ),
    option(
        "--allow-gaps",
        group=SCALE_OUT,
        is_flag=True,
        help="With --merge: missing indexes, and parts cut short, are not an error.",
    ),
    option(
        "--expect",
        group=SCALE_OUT,
        type=click.IntRange(min=0),
        metavar="N",
        help="With --merge: the whole run has N records, so records missing at its end "
        "(after every part's last index) are an error too.",
    ),
    option(
        "--grace",
        group=DISPLAY,
        type=Seconds(min=0),
        default=DEFAULT_GRACE,
        show_default=True,
        help="After Ctrl-C or SIGTERM, seconds that requests in flight may still finish.",
    ),
    option(
        "--uvloop/--no-uvloop",
        group=DISPLAY,
        default=True,
        show_default=True,
        help="Run on uvloop when it is installed (faster); --no-uvloop uses asyncio's own loop.",
    ),
    option(
        "--progress/--no-progress",
        group=DISPLAY,
        default=None,
        help="Progress bar on stderr. Default: on when stderr is a terminal (and not --quiet).",
    ),
    option(
        "-q", "--quiet", group=DISPLAY, is_flag=True, help="No summary (no bar unless --progress)."
    ),
]


def apply_options(function: F) -> F:
    for decorator in reversed(OPTIONS):
        function = decorator(function)
    return function


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
    data: str | None
    json: str | None
    header: tuple[tuple[str, str], ...]
    user_agent: str
    timeout: float
    connect_timeout: float
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
