"""The command line: parse options, build a Job, run it, map the outcome to an exit code.

Kept thin on purpose: everything that fetches, orders or writes lives in the
library modules. Imports of aiohttp and rich happen only once a run starts, so
``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from fetchmany._version import __version__
from fetchmany.records import FIELDS, BodyMode

if TYPE_CHECKING:
    from fetchmany.run import Outcome

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

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
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown field {unknown[0]!r}; choose from {', '.join(FIELDS)}"
            if unknown
            else "no fields given"
        )
    return names


EPILOG = """\b
Examples:
  fetchmany urls.txt --limit 5
  seq 1 100 | fetchmany -t 'https://api.example.com/posts?id={}' | jq .body.title
  fetchmany a.txt b.txt -o results.csv
  fetchmany urls.txt --fields index,url,status,error -f csv
  fetchmany urls.txt --unordered --body none | jq -c 'select(.ok | not)'

\b
Exit status: 0 every record ok, 1 some record not ok, 2 usage error,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 output closed early.
"""


@click.command(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument(
    "inputs",
    nargs=-1,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@click.option(
    "-t",
    "--template",
    callback=_template,
    metavar="URL",
    help="Expand each non-URL item into this URL; {} or {id} is replaced by the item, "
    "percent-encoded.",
)
@click.option(
    "-l",
    "-j",
    "--limit",
    "--concurrency",
    "limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=None,
    help="Records started but not yet written, at most (ordered output holds these while an "
    "earlier one is slow). Default: max(4 x limit, 256).",
)
@click.option(
    "--unordered", is_flag=True, help="Write records as they complete, not in input order."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write records to this file (replaced when the run ends) instead of stdout.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "json", "csv"], case_sensitive=False),
    help="Output format. Default: from the --output extension (.jsonl .ndjson .json .csv), "
    "else jsonl.",
)
@click.option(
    "--fields",
    callback=_fields,
    metavar="A,B,...",
    help=f"Fields to emit, in this order. Default: {','.join(FIELDS)}.",
)
@click.option(
    "--body",
    "body_mode",
    type=click.Choice([m.value for m in BodyMode], case_sensitive=False),
    default=BodyMode.AUTO.value,
    show_default=True,
    help="auto: parsed JSON for JSON types, text for text types, base64 otherwise.",
)
@click.option("-X", "--method", default="GET", show_default=True, help="HTTP method.")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    callback=_headers,
    metavar="'NAME: VALUE'",
    help="Extra request header; repeatable.",
)
@click.option(
    "-A",
    "--user-agent",
    default=f"fetchmany/{__version__}",
    show_default=True,
    help="User-Agent header.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds for one whole attempt (connect, headers and body).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to establish a connection.",
)
@click.option(
    "--max-redirects",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Redirects to follow; 0 records the redirect response itself.",
)
@click.option(
    "--max-body-size",
    callback=_size,
    default="10MB",
    show_default=True,
    metavar="SIZE",
    help="Stop reading a body at this size (500KB, 10MB, 1GB); the record says body_too_large.",
)
@click.option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. Default: on when stderr is a terminal (and not --quiet).",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary (and no bar unless --progress).")
@click.version_option(__version__, "-V", "--version", prog_name="fetchmany")
def cli(
    inputs: tuple[str, ...],
    template: Any,
    limit: int,
    window: int | None,
    unordered: bool,
    output: str | None,
    fmt: str | None,
    fields: tuple[str, ...],
    body_mode: str,
    method: str,
    headers: tuple[tuple[str, str], ...],
    user_agent: str,
    timeout: float,
    connect_timeout: float,
    max_redirects: int,
    max_body_size: int,
    insecure: bool,
    progress: bool | None,
    quiet: bool,
) -> None:
    """Fetch many URLs concurrently; write one record per input line, in input order.

    INPUTS are files with one URL (or ID, with --template) per line; '-' or none
    reads stdin. Blank lines and lines starting with # are skipped. Records go to
    stdout (or --output) as JSON Lines, a JSON array or CSV; progress and the
    summary go to stderr.
    """
    from fetchmany.options import FetchOptions
    from fetchmany.writers import Output, OutputFormat, format_for_path, make_writer

    try:
        options = FetchOptions(
            limit=limit,
            window=window,
            ordered=not unordered,
            method=method,
            headers=headers,
            user_agent=user_agent,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_redirects=max_redirects,
            verify_tls=not insecure,
            body=BodyMode(body_mode.lower()),
            max_body_size=max_body_size,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    out_format = OutputFormat(fmt.lower()) if fmt else format_for_path(output) or OutputFormat.JSONL
    show_bar = progress if progress is not None else (not quiet and sys.stderr.isatty())
    if not inputs and sys.stdin.isatty() and not quiet:
        click.echo("fetchmany: reading items from the terminal; end with Ctrl-D", err=True)
    try:
        destination = Output(output)
    except OSError as exc:
        raise click.UsageError(f"cannot write {output}: {exc.strerror or exc}") from None

    from fetchmany.progress import make_console, make_display
    from fetchmany.run import Job

    console = make_console()
    job = Job(
        inputs=inputs,
        template=template,
        options=options,
        writer=make_writer(out_format, destination, fields),
        display=make_display(show_bar, console),
    )
    outcome = _run(job)
    if not quiet and not outcome.broken_pipe:
        from fetchmany.progress import print_summary

        print_summary(console, outcome.stats, interrupted=outcome.signal is not None)
    _exit(outcome)


def _run(job: Any) -> Outcome:
    import asyncio

    from fetchmany.run import run_job

    return asyncio.run(run_job(job))


def _exit(outcome: Outcome) -> NoReturn:
    if outcome.broken_pipe:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    if outcome.signal is not None:
        sys.exit(128 + outcome.signal)
    sys.exit(EXIT_OK if outcome.stats.failed == 0 else EXIT_FAILED)


def _silence_stdout() -> None:
    """After the reader went away, point stdout at /dev/null so the interpreter's
    final flush cannot print 'Exception ignored ... BrokenPipeError'."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: usage errors are one line and exit 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="fetchmany", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"fetchmany: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(128 + signal.SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(EXIT_OK)
