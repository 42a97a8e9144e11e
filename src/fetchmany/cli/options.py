"""The command-line options: declarations, value parsing, and help grouped under headings.

Declarations live here so ``command.py`` stays the wiring between parsed values and
the library. Every default is read from the module that owns it (``options.py`` for
a fetch's settings, ``fetch/retry.py`` for the retry policy; the command's own
settings are owned here). Parsing callbacks turn text into typed values and raise
``click.BadParameter`` with a message a user can act on; ``CommandLine``
(``commandline.py``) is the one typed object the parsed values become.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from click.core import ParameterSource

from fetchmany.checks import (
    TOKEN,
    format_size,
    header,
    header_names,
    rate,
    seconds,
    size,
)
from fetchmany.fetch.picks import checked_picks
from fetchmany.fetch.retry import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_ON,
    retries,
    statuses,
)
from fetchmany.fields import FIELDS, BodyMode
from fetchmany.options import (
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
    at_least_one,
    at_least_zero,
    limit,
    method,
    proxy,
    user_agent,
    window_size,
)
from fetchmany.redaction import MASK

if TYPE_CHECKING:
    from fetchmany.fetch.picks import Pick
    from fetchmany.input.sources import Shard

    ParamType = click.ParamType[Any]  # generic from click 8.2; not subscriptable before
else:
    ParamType = click.ParamType

DEFAULT_GRACE: Final = 2.0
"""After the first Ctrl-C or SIGTERM, how long requests in flight may still finish."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def checked(check: Callable[[Any], T]) -> Callable[[click.Context, click.Parameter, Any], T | None]:
    """A click callback that runs the library's own check of a setting (``checks.py``),
    so the command line and ``FetchOptions`` refuse a value alike, with the same words;
    click adds which option it was."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> T | None:
        return None if value is None else _checked_value(check, value)

    return callback


def _checked_value(check: Callable[[Any], T], value: Any) -> T:
    try:
        return check(value)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from None


class Checked(ParamType):
    """A number read from its text (``parse``: ``int`` or ``float``), then checked as the
    library checks the setting (``checks.py``), so both refuse it with the same words."""

    name = "number"

    def __init__(self, parse: Callable[[str], object], check: Callable[[object], object]):
        self.parse = parse
        self.check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = self.parse(value.strip())
            except ValueError:
                what = "a number of seconds" if self.parse is float else "a whole number"
                self.fail(f"not {what}: {value!r}", param, ctx)
        try:
            return self.check(value)
        except (ValueError, TypeError) as exc:
            self.fail(str(exc), param, ctx)


def duration(*, zero: bool) -> Checked:
    """Seconds: finite, from 0 or above it. ``inf`` and ``nan`` parse as floats, and
    would wait forever or compare false with every deadline."""
    return Checked(float, lambda value: seconds(value, zero=zero))


def count(check: Callable[[object], int]) -> Checked:
    return Checked(int, check)


def _picks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[Pick, ...]:
    try:
        return checked_picks(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class LinesType(click.types.StringParamType):
    """A string option whose FETCHMANY_* variable holds one value per line (headers have
    spaces, so the usual whitespace split would break them)."""

    envvar_list_splitter = "\n"


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
        if not sep or not TOKEN.fullmatch(name):
            raise click.BadParameter(f"expected 'Name: value', got {_first_word(value)!r}")
        content = content.strip(" \t")
        try:
            headers.append(header(name, content))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return tuple(headers)


def _first_word(value: str) -> str:
    """A malformed header as it may be shown: its first word, the rest masked. Without a
    colon there is no telling name from value, and the value may be a secret
    (``-H 'Authorization Bearer s3cret'``)."""
    word = re.split(r"[\s=:]", value.strip(), maxsplit=1)[0][:40]
    return word if word == value else f"{word} {MASK}"


def _limit(ctx: click.Context, param: click.Parameter, value: str) -> int | Adaptive:
    text = value.strip().lower()
    if text == "auto" or text.startswith("auto:"):
        try:
            return Adaptive.parse(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    try:
        number = int(text)
    except ValueError:
        raise click.BadParameter(f"expected a number or auto, got {value!r}") from None
    return _checked_value(limit, number)


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
    return _checked_value(at_least_one, count)


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
    """An option that knows which help heading it belongs under.

    Its help says everything in one style: the metavar given with the option (``N``,
    ``SECONDS``, ``SIZE``...; never click's ``INTEGER RANGE`` or ``TEXT``), and the
    default, when there is one, as the help's last sentence (``Default: 10.``), written
    from the owner's constant. click's own bracketed extras (``[default: ...]``,
    ``[x>=1]``) are left out, so there is one way of showing each.
    """

    def __init__(self, *args: Any, group: str = "Other", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def get_help_extra(self, ctx: click.Context) -> Any:
        return {}


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` tells it (``COLUMNS`` first,
    then the terminal stdout is, else 80), without importing shutil, which imports
    three compression modules: about 3% of ``--help``'s instructions."""
    try:
        columns = int(os.environ["COLUMNS"])  # as shutil reads it: " 90", "+90" are 90
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class UnbrokenFormatter(click.HelpFormatter):
    """Help text wrapped only between words: click's wrapper breaks a word at a hyphen
    (``x-www-form-`` / ``urlencoded``) and a long one anywhere (``inde`` / ``x,input``).
    Its width is click's (``FORCED_WIDTH``, else the terminal's less 2 up to
    ``max_width``, at least 50), told by ``terminal_columns``."""

    def __init__(
        self, indent_increment: int = 2, width: int | None = None, max_width: int | None = None
    ) -> None:
        if width is None:
            width = click.formatting.FORCED_WIDTH
        if width is None:
            width = max(min(terminal_columns(), max_width or 80) - 2, 50)
        super().__init__(indent_increment, width, max_width)

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        first_col = col_max + col_spacing  # one column for every section (format_options)
        indent = " " * self.current_indent
        if self.width - first_col - self.current_indent < _NARROW:
            # Too narrow for two columns: each help under its option, as clap does.
            first_col = 6
        for first, second in rows:
            self.write(f"{indent}{first}")
            if not second:
                self.write("\n")
                continue
            if len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - len(first)))
            else:
                self.write("\n" + " " * (first_col + self.current_indent))
            width = max(self.width - first_col - self.current_indent, 20)
            lines = _wrap(second, width) or [""]
            self.write(lines[0] + "\n")
            for line in lines[1:]:
                self.write(f"{indent}{' ' * first_col}{line}\n")

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        width = max(self.width - self.current_indent, 20)
        paragraphs = text.split("\n\n")
        for number, paragraph in enumerate(paragraphs):
            if paragraph.startswith("\b\n"):  # click's mark: lines kept as written
                lines = paragraph[2:].splitlines()
            else:
                lines = _wrap(" ".join(paragraph.split()), width)
            self.write("".join(f"{indent}{line}\n" for line in lines))
            if number < len(paragraphs) - 1:
                self.write("\n")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


_TERM_COLUMN: Final = 30
"""The widest an option's names may be and still have its help beside them."""
_NARROW: Final = 36
"""Below this width for help beside the names, each help goes under its option."""


class HelpContext(click.Context):
    formatter_class = UnbrokenFormatter


class GroupedCommand(click.Command):
    """A command whose --help lists options under headings, in declaration order."""

    context_class = HelpContext

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):
                continue  # INPUTS is described in the command's text
            group = param.group if isinstance(param, GroupedOption) else "Other"
            sections.setdefault(group, []).append(record)
        sections["Other"] = sections.pop("Other", [])
        terms = [len(first) for rows in sections.values() for first, _ in rows]
        column = min(max(terms, default=0), _TERM_COLUMN)
        for group, rows in sections.items():
            with formatter.section(group):
                formatter.write_dl(rows, col_max=column)


def option(*decls: str, group: str, **attrs: Any) -> Callable[[F], F]:
    return click.option(*decls, cls=GroupedOption, group=group, **attrs)


def _seconds(value: float) -> str:
    return f"{value:g}"


INPUT = "Input"
REQUEST = "Request"
TIMES = "Timeouts and retries"
CONCURRENCY = "Concurrency and politeness"
OUTPUT = "Output"
SCALE_OUT = "Scale out"
DISPLAY = "Display"

DEFAULT_FIELDS_HELP: Final = ", ".join(FIELDS)
"""--fields' default in its help: one name a word, so a line breaks between names."""

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
        metavar="lines|csv|jsonl",
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
        "-X",
        "--method",
        group=REQUEST,
        callback=checked(method),
        metavar="METHOD",
        help="HTTP method. Default: GET, or POST when --data or --json is given.",
    ),
    option(
        "-I",
        "--head",
        group=REQUEST,
        is_flag=True,
        help="Send HEAD requests, as -X HEAD (curl's -I): status and headers, no body.",
    ),
    option(
        "-d",
        "--data",
        group=REQUEST,
        metavar="TEMPLATE",
        help="Request body with the same placeholders, values form-encoded (as given when -H "
        "sets another Content-Type); @FILE reads it from a file. Content-Type: "
        "application/x-www-form-urlencoded unless -H sets one.",
    ),
    option(
        "--json",
        group=REQUEST,
        metavar="TEMPLATE",
        help="JSON request body; each placeholder becomes a JSON string: '{\"id\": {id}}'. "
        "@FILE reads it from a file. Content-Type and Accept: application/json.",
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
        callback=checked(user_agent),
        metavar="AGENT",
        help=f"User-Agent header. Default: {DEFAULT_USER_AGENT}.",
    ),
    option(
        "-L",
        "--location/--no-location",
        group=REQUEST,
        default=None,
        help="Follow redirects (curl's -L): fetchmany does by default, up to --max-redirects. "
        "--no-location records the redirect itself, as --max-redirects 0.",
    ),
    option(
        "--max-redirects",
        group=REQUEST,
        type=count(at_least_zero),
        default=DEFAULT_MAX_REDIRECTS,
        metavar="N",
        help="Redirects to follow; 0 records the redirect response itself. "
        f"Default: {DEFAULT_MAX_REDIRECTS}.",
    ),
    option(
        "--max-body-size",
        group=REQUEST,
        callback=checked(size),
        default=None,
        metavar="SIZE",
        help="Stop reading a body at this size, decoded (500KB, 10MB, 1GB): body_too_large. "
        f"Default: {format_size(DEFAULT_MAX_BODY_SIZE)}.",
    ),
    option("-k", "--insecure", group=REQUEST, is_flag=True, help="Do not verify TLS certificates."),
    option(
        "--proxy",
        group=REQUEST,
        callback=checked(proxy),
        metavar="URL",
        help="Proxy for every request: http(s)://, socks5://, socks5h:// (names resolved by the "
        "proxy), socks4://. Default: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY from the "
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
        metavar="FILE",
        help="PEM file of CA certificates to trust (a private CA).",
    ),
    option(
        "--timeout",
        group=TIMES,
        type=duration(zero=False),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"One whole attempt: connect, headers and body. Default: {_seconds(DEFAULT_TIMEOUT)}.",
    ),
    option(
        "--connect-timeout",
        group=TIMES,
        type=duration(zero=False),
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"Establishing a connection. Default: {_seconds(DEFAULT_CONNECT_TIMEOUT)}.",
    ),
    option(
        "-m",
        "--max-time",
        group=TIMES,
        type=duration(zero=False),
        default=None,
        metavar="SECONDS",
        help="Deadline for each item, all its attempts and backoffs together: an attempt "
        "still running then is cut, a backoff that would end later is not taken, and the "
        "record is a timeout naming --max-time. Default: none.",
    ),
    option(
        "--retries",
        "--retry",
        "retries",
        group=TIMES,
        type=count(retries),
        default=DEFAULT_RETRIES,
        metavar="N",
        help="Retries after a connection error, a timeout, a broken answer or a --retry-on "
        f"status. Default: {DEFAULT_RETRIES}.",
    ),
    option(
        "--retry-on",
        group=TIMES,
        callback=checked(statuses),
        default=None,
        metavar="CODES",
        help=f"Statuses that are retried. Default: {','.join(map(str, sorted(DEFAULT_RETRY_ON)))}.",
    ),
    option(
        "--backoff",
        group=TIMES,
        type=duration(zero=True),
        default=DEFAULT_BACKOFF,
        metavar="SECONDS",
        help="First backoff; doubles each retry, with full jitter. "
        f"Default: {_seconds(DEFAULT_BACKOFF)}.",
    ),
    option(
        "--max-backoff",
        group=TIMES,
        type=duration(zero=True),
        default=DEFAULT_MAX_BACKOFF,
        metavar="SECONDS",
        help="Longest wait before a retry, Retry-After included. "
        f"Default: {_seconds(DEFAULT_MAX_BACKOFF)}.",
    ),
    option(
        "--retry-all-methods",
        group=TIMES,
        is_flag=True,
        help="Retry non-idempotent methods (POST, PATCH) too.",
    ),
    option(
        "--grace",
        group=TIMES,
        type=duration(zero=True),
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="After Ctrl-C or SIGTERM, how long requests in flight may still finish. "
        f"Default: {_seconds(DEFAULT_GRACE)}.",
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
        metavar="N|auto[:MAX]",
        help="Requests in flight at most. auto: find each host's capacity from its answers "
        f"(overload answers and latency), up to MAX ({DEFAULT_CEILING} unless given). "
        f"Default: {DEFAULT_LIMIT}.",
    ),
    option(
        "--per-host",
        group=CONCURRENCY,
        type=count(at_least_one),
        default=None,
        metavar="N",
        help="Requests in flight per host at most, on top of --limit.",
    ),
    option(
        "-r",
        "--rate",
        group=CONCURRENCY,
        callback=checked(rate),
        metavar="RATE",
        help="Request starts per time, evenly spaced, retries included: 20, 20/s, 600/m, 1000/h.",
    ),
    option(
        "--window",
        group=CONCURRENCY,
        type=count(at_least_one),
        default=None,
        metavar="N",
        help="Items started but not yet written, at most (they wait for an earlier slow one, "
        "or out a backoff). Default: no count; --window-bytes bounds them.",
    ),
    option(
        "--window-bytes",
        group=CONCURRENCY,
        callback=checked(window_size),
        metavar="SIZE",
        default=format_size(DEFAULT_WINDOW_BYTES),
        help="Memory that records waiting for an earlier slow one may hold, encoded; when it "
        "is spent, no new item starts (one record larger than this still gets through). "
        f"Default: {format_size(DEFAULT_WINDOW_BYTES)}.",
    ),
    option(
        "-o",
        "--output",
        group=OUTPUT,
        type=click.Path(dir_okay=False, writable=True),
        metavar="FILE",
        help="Write records to this file instead of stdout (replaced only when the run ends).",
    ),
    option(
        "-f",
        "--format",
        group=OUTPUT,
        type=click.Choice(["jsonl", "json", "csv"], case_sensitive=False),
        metavar="jsonl|json|csv",
        help="Output format. Default: from the --output extension (.jsonl .ndjson .json .csv), "
        "else jsonl.",
    ),
    option(
        "--fields",
        group=OUTPUT,
        callback=_fields,
        metavar="A,B,...",
        help=f"Fields to emit, in this order. Default: {DEFAULT_FIELDS_HELP}.",
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
        callback=checked(header_names),
        metavar="NAME,...|all",
        help="Record a headers field with these response headers (lower-case names; "
        "repeats joined with commas, set-cookie a list).",
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
        metavar="DIR",
        help="Stream each body to a file in this directory; records get path and sha256 "
        "instead of body.",
    ),
    option(
        "--save-name",
        group=OUTPUT,
        default=DEFAULT_SAVE_NAME,
        metavar="TEMPLATE",
        help="File name in --save-dir: {index} (8 digits), {ext} (from the content type), "
        "{} or {id}, {column}. Sanitised: never outside the directory. "
        f"Default: {DEFAULT_SAVE_NAME}.",
    ),
    option(
        "--body",
        group=OUTPUT,
        type=click.Choice([m.value for m in BodyMode], case_sensitive=False),
        default=None,
        metavar="|".join(m.value for m in BodyMode),
        help="auto: parsed JSON for JSON types, text for text types, base64 otherwise. "
        f"Default: {DEFAULT_BODY.value}.",
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
        help="In CSV, prefix cells starting with =, +, -, @, a tab or a CR with ' so "
        "spreadsheets show them instead of running them.",
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
        metavar="index|host",
        help="With --shard: host puts every item of one host (scheme, host, port) in one "
        "shard, so --per-host, --limit auto and a host's quota hold for the whole job. "
        "Default: index.",
    ),
    option(
        "-P",
        "--processes",
        group=SCALE_OUT,
        callback=_processes,
        default="1",
        metavar="N|auto",
        help="Worker processes on this machine, each a shard, merged in order into the one "
        "output; auto: one per core. --limit, --rate and --per-host stay totals. Default: 1.",
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
        type=count(at_least_zero),
        metavar="N",
        help="With --merge: the whole run has N records, so records missing at its end "
        "(after every part's last index) are an error too.",
    ),
    option(
        "--uvloop/--no-uvloop",
        group=SCALE_OUT,
        default=True,
        help="Run on uvloop when it is installed (about 12% less CPU per request); "
        "--no-uvloop uses asyncio's own loop. Default: --uvloop.",
    ),
    option(
        "--progress/--no-progress",
        group=DISPLAY,
        default=None,
        help="Progress bar on stderr. Default: on when stderr is a terminal (and not --quiet).",
    ),
    option(
        "-q",
        "--quiet",
        "-s",
        "--silent",
        "quiet",
        group=DISPLAY,
        is_flag=True,
        help="No summary (no bar unless --progress); errors are still shown. -s and --silent "
        "as in curl.",
    ),
]


def apply_options(function: F) -> F:
    for decorator in reversed(OPTIONS):
        function = decorator(function)
    return function
