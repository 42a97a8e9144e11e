"""The command line: parse options, build a Job, run it, map the outcome to an exit code.

Kept thin on purpose: everything that fetches, orders or writes lives in the
library modules. Imports of aiohttp and rich happen only once a run starts, so
``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from fetchmany._version import __version__
from fetchmany.cli_options import GroupedCommand, apply_options
from fetchmany.records import BodyMode

if TYPE_CHECKING:
    import asyncio

    from fetchmany.options import FetchOptions
    from fetchmany.progress import Display
    from fetchmany.rows import InputFormat
    from fetchmany.run import Job, Outcome
    from fetchmany.templates import RequestTemplate
    from fetchmany.writers import OutputFormat

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

EPILOG = """\b
Examples:
  fetchmany urls.txt --limit 5
  seq 1 100 | fetchmany -t 'https://api.example.com/posts?id={}' | jq .body.title
  fetchmany a.txt b.txt -o results.csv
  fetchmany urls.txt --fields index,url,status,error -f csv
  fetchmany urls.txt --unordered --body none | jq -c 'select(.ok | not)'
  seq 1 100 | fetchmany -t 'https://api.example.com/posts?id={}' --pick title=0.title -f csv
  fetchmany repos.csv -t 'https://api.github.com/repos/{owner}/{name}' --pick stars=stargazers_count
  seq 1 50 | fetchmany -t https://api.example.com/lookup --json '{"id": {id}}'
  fetchmany ids.txt -t 'https://api.example.com/items/{}' -r 600/m --per-host 4
  fetchmany urls.txt --save-dir pages --save-name '{index}{ext}'
  fetchmany urls.txt -o out.jsonl --resume      # again after Ctrl-C or a crash

\b
Every option can also be set as FETCHMANY_<OPTION> (FETCHMANY_LIMIT=20).
Shell completion: eval "$(_FETCHMANY_COMPLETE=bash_source fetchmany)" (or zsh_source, fish_source).

\b
Exit status: 0 every record ok, 1 some record not ok, 2 usage error,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 output closed early.
"""


@click.command(
    cls=GroupedCommand,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument(
    "inputs",
    nargs=-1,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@apply_options
@click.version_option(__version__, "-V", "--version", prog_name="fetchmany")
def cli(inputs: tuple[str, ...], **params: Any) -> None:
    """Fetch many URLs concurrently; write one record per input line, in input order.

    INPUTS are files with one URL (or ID, with --template) per line, or CSV or
    JSON Lines rows; '-' or none reads stdin. Blank lines and lines starting
    with # are skipped. Records go to stdout (or --output) as JSON Lines, a JSON
    array or CSV; progress and the summary go to stderr.
    """
    from fetchmany.progress import make_console, make_display, print_summary
    from fetchmany.writers import OutputFormat, format_for_path

    ctx = click.get_current_context()
    request = build_request(inputs, params)
    if request.data is not None and ctx.get_parameter_source("method") is ParameterSource.DEFAULT:
        params["method"] = "POST"
    params["fields"] = choose_fields(params, explicit_body=_given(ctx, "body"))
    options = build_options(params, content_type=_body_type(params) if request.data else None)
    output: str | None = params["output"]
    fmt: str | None = params["format"]
    quiet: bool = params["quiet"]
    out_format = OutputFormat(fmt.lower()) if fmt else format_for_path(output) or OutputFormat.JSONL
    if params["resume"] and output is None:
        raise click.UsageError("--resume needs --output FILE to continue")
    if params["resume"] and params["unordered"]:
        raise click.UsageError("--resume continues input order; drop --unordered")

    progress: bool | None = params["progress"]
    show_bar = progress if progress is not None else (not quiet and sys.stderr.isatty())
    if not inputs and sys.stdin.isatty() and not quiet:
        click.echo("fetchmany: reading items from the terminal; end with Ctrl-D", err=True)
    console = make_console()
    job = build_job(inputs, params, options, request, out_format, make_display(show_bar, console))
    outcome = _run(job, use_uvloop=params["uvloop"])
    if not quiet and not outcome.broken_pipe:
        print_summary(console, outcome.stats, interrupted=outcome.signal is not None)
    _exit(outcome)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def _body_type(params: dict[str, Any]) -> str:
    from fetchmany.run import FORM_CONTENT_TYPE

    return "application/json" if params["json"] is not None else FORM_CONTENT_TYPE


def input_format_of(inputs: tuple[str, ...], params: dict[str, Any]) -> InputFormat:
    from fetchmany.rows import InputFormat, infer_input_format

    chosen: str | None = params["input_format"]
    return InputFormat(chosen.lower()) if chosen else infer_input_format(inputs)


def build_request(inputs: tuple[str, ...], params: dict[str, Any]) -> RequestTemplate:
    """The URL and body templates, checked against what the input format can fill."""
    from fetchmany.rows import InputFormat
    from fetchmany.run import request_template
    from fetchmany.templates import TemplateError

    try:
        request = request_template(params["template"], params["data"], params["json"])
    except TemplateError as exc:
        raise click.UsageError(str(exc)) from None
    line_input = input_format_of(inputs, params) is InputFormat.LINES
    if line_input and (unknown := request.names - {"", "id"}):
        raise click.UsageError(
            f"line input only fills {{}} or {{id}}, not {{{sorted(unknown)[0]}}}; "
            "for named columns use --input-format csv or jsonl"
        )
    if not line_input and "" in request.names:
        raise click.UsageError("with csv or jsonl input, name the column: {owner}, not {}")
    return request


def choose_fields(params: dict[str, Any], explicit_body: bool) -> tuple[str, ...]:
    """--fields as given (checked), else the default for what this run records."""
    from fetchmany.records import FIELDS, SAVED_FIELDS

    pick_names = tuple(p.name for p in params["pick"])
    saved = SAVED_FIELDS if params["save_dir"] else ()
    given: tuple[str, ...] | None = params["fields"]
    if given is not None:
        known = (*FIELDS, *pick_names, *saved)
        unknown = [name for name in given if name not in known]
        if unknown:
            raise click.UsageError(
                f"unknown field {unknown[0]!r} for --fields; choose from {', '.join(known)}"
            )
        return given
    if pick_names:
        return ("input", *pick_names, *saved, *(("body",) if explicit_body else ()))
    if saved:
        return (*(f for f in FIELDS if f != "body"), *saved)
    return FIELDS


def build_options(params: dict[str, Any], content_type: str | None = None) -> FetchOptions:
    """The library's options from parsed CLI values; invalid combinations are usage errors."""
    from fetchmany.options import FetchOptions
    from fetchmany.retry import RetryPolicy

    try:
        return FetchOptions(
            limit=params["limit"],
            window=params["window"],
            ordered=not params["unordered"],
            method=params["method"],
            headers=params["header"],
            user_agent=params["user_agent"],
            timeout=params["timeout"],
            connect_timeout=params["connect_timeout"],
            max_redirects=params["max_redirects"],
            verify_tls=not params["insecure"],
            body=BodyMode(params["body"].lower()),
            max_body_size=params["max_body_size"],
            retry=RetryPolicy(
                retries=params["retries"],
                retry_on=params["retry_on"],
                backoff=params["backoff"],
                max_backoff=params["max_backoff"],
                retry_all_methods=params["retry_all_methods"],
            ),
            rate=params["rate"],
            per_host=params["per_host"],
            ca_bundle=params["ca_bundle"],
            content_type=content_type,
            proxy=params["proxy"],
            netrc=params["netrc"],
            picks=params["pick"],
            save_dir=params["save_dir"],
            save_name=params["save_name"],
            dedupe=params["dedupe"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def build_job(
    inputs: tuple[str, ...],
    params: dict[str, Any],
    options: FetchOptions,
    request: RequestTemplate,
    out_format: OutputFormat,
    display: Display,
) -> Job:
    """Open the output (checking a file to resume) and assemble the run."""
    from fetchmany.resume import ResumeError, scan
    from fetchmany.run import Job, Resume
    from fetchmany.writers import Output, make_writer

    path: str | None = params["output"]
    fields: tuple[str, ...] = params["fields"]
    resume = None
    # Before the output is opened: a usage error must leave no temporary file behind.
    if options.netrc:
        from fetchmany.client import load_netrc

        try:
            load_netrc()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if options.save_dir is not None:
        try:
            os.makedirs(options.save_dir, exist_ok=True)
        except OSError as exc:
            raise click.UsageError(f"cannot create {options.save_dir}: {exc.strerror}") from None
    try:
        if params["resume"]:
            assert path is not None
            point = scan(path, out_format, fields)
            resume = Resume(path, out_format, fields, point)
            destination = Output(path, append_at=point.offset)
        else:
            destination = Output(path)
    except ResumeError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    writer = make_writer(out_format, destination, fields, csv_safe=params["csv_safe"])
    return Job(
        inputs,
        request,
        options,
        writer,
        display,
        resume,
        params["grace"],
        input_format_of(inputs, params),
    )


def _run(job: Job, use_uvloop: bool) -> Outcome:
    import asyncio

    from fetchmany.resume import ResumeError
    from fetchmany.run import run_job

    try:
        with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
            return runner.run(run_job(job))
    except ResumeError as exc:
        raise click.UsageError(str(exc)) from None


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when wanted and installed; None means asyncio's default."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


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
        cli.main(
            args=argv,
            prog_name="fetchmany",
            standalone_mode=False,
            auto_envvar_prefix="FETCHMANY",
        )
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
