"""The command-line options: declarations, value parsing, and help grouped under headings.

Declarations live here so ``cli.py`` stays the wiring between parsed values and
the library. Parsing callbacks turn text into typed values and raise
``click.BadParameter`` with a message a user can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from fetchmany._version import __version__
from fetchmany.records import FIELDS, BodyMode

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
    if unit not in _SIZE_UNITS or value < 0:
        raise ValueError(f"not a size: {text!r} (try 500KB, 10MB, 1GB)")
    return int(value * _SIZE_UNITS[unit])


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from fetchmany.limits import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _statuses(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[int]:
    codes = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 100 <= int(part) <= 599:
            raise click.BadParameter(f"not an HTTP status: {part!r}")
        codes.add(int(part))
    return frozenset(codes)


def _template(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from fetchmany.sources import TemplateError, UrlTemplate

    try:
        template = UrlTemplate(value)
    except TemplateError as exc:
        raise click.BadParameter(str(exc)) from None
    unknown = template.names - {"", "id"}
    if unknown:
        raise click.BadParameter(
            f"line input only fills {{}} or {{id}}, not {{{sorted(unknown)[0]}}}"
        )
    return template


def _headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    headers = []
    for value in values:
        name, sep, content = value.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t\r\n"):
            raise click.BadParameter(f"expected 'Name: value', got {value!r}")
        if any(c in content for c in "\r\n"):
            raise click.BadParameter(f"header value may not contain a line break: {value!r}")
        headers.append((name, content.strip()))
    return tuple(headers)


def _fields(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return FIELDS
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("no fields given")
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise click.BadParameter(f"unknown field {unknown[0]!r}; choose from {', '.join(FIELDS)}")
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
            if record is None:
                continue
            group = param.group if isinstance(param, GroupedOption) else "Other"
            sections.setdefault(group, []).append(record)
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
DISPLAY = "Display"

OPTIONS: list[Callable[[F], F]] = [
    option(
        "-t",
        "--template",
        group=INPUT,
        callback=_template,
        metavar="URL",
        help="Expand each non-URL item into this URL; {} or {id} is replaced by the item, "
        "percent-encoded.",
    ),
    option(
        "-l",
        "-j",
        "--limit",
        "--concurrency",
        "limit",
        group=CONCURRENCY,
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="Requests in flight at most.",
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
        "or out a backoff). Default: max(4 x limit, 256).",
    ),
    option(
        "--retries",
        group=RETRIES,
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Retries after a connection error, a timeout or a --retry-on status.",
    ),
    option(
        "--retry-on",
        group=RETRIES,
        callback=_statuses,
        default="429,500,502,503,504",
        show_default=True,
        metavar="CODES",
        help="Statuses that are retried.",
    ),
    option(
        "--backoff",
        group=RETRIES,
        type=click.FloatRange(min=0),
        default=0.5,
        show_default=True,
        help="First backoff in seconds; doubles each retry, with full jitter.",
    ),
    option(
        "--max-backoff",
        group=RETRIES,
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Longest wait before a retry, Retry-After included.",
    ),
    option(
        "--retry-all-methods",
        group=RETRIES,
        is_flag=True,
        help="Retry non-idempotent methods (POST, PATCH) too.",
    ),
    option("-X", "--method", group=REQUEST, default="GET", show_default=True, help="HTTP method."),
    option(
        "-H",
        "--header",
        "headers",
        group=REQUEST,
        multiple=True,
        callback=_headers,
        metavar="'NAME: VALUE'",
        help="Extra request header; repeatable. Authorization and Cookie are never sent to "
        "another origin after a redirect.",
    ),
    option(
        "-A",
        "--user-agent",
        group=REQUEST,
        default=f"fetchmany/{__version__}",
        show_default=True,
        help="User-Agent header.",
    ),
    option(
        "--timeout",
        group=REQUEST,
        type=click.FloatRange(min=0, min_open=True),
        default=30.0,
        show_default=True,
        help="Seconds for one whole attempt (connect, headers and body).",
    ),
    option(
        "--connect-timeout",
        group=REQUEST,
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        help="Seconds to establish a connection.",
    ),
    option(
        "--max-redirects",
        group=REQUEST,
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="Redirects to follow; 0 records the redirect response itself.",
    ),
    option(
        "--max-body-size",
        group=REQUEST,
        callback=_size,
        default="10MB",
        show_default=True,
        metavar="SIZE",
        help="Stop reading a body at this size, decoded (500KB, 10MB, 1GB): body_too_large.",
    ),
    option("-k", "--insecure", group=REQUEST, is_flag=True, help="Do not verify TLS certificates."),
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
        "fmt",
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
        "--body",
        "body_mode",
        group=OUTPUT,
        type=click.Choice([m.value for m in BodyMode], case_sensitive=False),
        default=BodyMode.AUTO.value,
        show_default=True,
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
        "--csv-safe",
        group=OUTPUT,
        is_flag=True,
        help="In CSV, prefix cells starting with = + - @ with ' so spreadsheets do not run them.",
    ),
    option(
        "--grace",
        group=DISPLAY,
        type=click.FloatRange(min=0),
        default=2.0,
        show_default=True,
        help="After Ctrl-C or SIGTERM, seconds that requests in flight may still finish.",
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
