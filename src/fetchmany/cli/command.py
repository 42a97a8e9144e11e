"""The command line: parse options, build a Job, run it, map the outcome to an exit code.

Kept thin on purpose: everything that fetches, orders or writes lives in the
library modules. Imports of aiohttp and rich happen only once a run starts, so
``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import stat
import sys
from typing import TYPE_CHECKING, Any, Final, NoReturn

import click

from fetchmany._version import __version__
from fetchmany.cli.options import GroupedCommand, apply_options
from fetchmany.signals import Terminated, stop_at_once

if TYPE_CHECKING:
    from fetchmany.cli.commandline import CommandLine
    from fetchmany.cli.run import Job, Outcome
    from fetchmany.fetch.policy import RequestPlan
    from fetchmany.fetch.session import SessionSetup
    from fetchmany.input.rows import InputFormat
    from fetchmany.options import FetchOptions
    from fetchmany.output.previous import PreviousOutput
    from fetchmany.output.progress import Display
    from fetchmany.output.stats import FileTotals
    from fetchmany.output.writers import OutputFormat

EXIT_OK = 0
EXIT_FAILED = 1
"""The output is whole, and some record in it is not ok."""
EXIT_USAGE = 2
EXIT_INCOMPLETE = 75
"""The run could not finish, so its output is incomplete: a full disk, a -P worker that
died, a later input that could not be read, a merge with a record missing. sysexits.h's
EX_TEMPFAIL ("the user is invited to retry"): run it again, with --resume, once the
cause is fixed. Below 126, apart from 1 and 2 and from 128+N (signals), so a batch
system can retry on it alone (docs/scale-out.md)."""
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
EXIT_INTERNAL = 70  # EX_SOFTWARE

EPILOG = """\b
Examples (from the README; docs/reference.md explains every option):
  fetchmany urls.txt --limit 5 -o results.csv
  seq 1 100 \\
    | fetchmany -t 'https://jsonplaceholder.typicode.com/posts?id={}' -q \\
    | jq -r '.body[0].title'
  fetchmany links.txt -I -m 10 --redirects -f csv -o links.csv
  fetchmany links.txt --unordered --body none -q | jq -c 'select(.ok | not)'
  fetchmany repos.csv -t 'https://api.github.com/repos/{owner}/{name}' \\
    --pick stars=stargazers_count -f csv
  fetchmany big-list.txt -o out.jsonl --resume --rate 50/s --per-host 4
  fetchmany pages.txt --refresh pages.jsonl -o pages.jsonl
  fetchmany urls.txt -P auto -o out.jsonl

\b
From curl: -L, -I, -s, -m SECONDS and --retry N mean what they mean there.
Every option can also be set as FETCHMANY_<OPTION> (FETCHMANY_LIMIT=20).
Shell completion: eval "$(_FETCHMANY_COMPLETE=bash_source fetchmany)"
(zsh_source and fish_source for those shells).

\b
Exit status: 0 every record ok, 1 some record not ok, 2 usage error,
75 could not finish (output incomplete: run again with --resume),
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
@click.version_option(
    __version__, "-V", "--version", prog_name="fetchmany", allow_from_autoenv=False
)
def cli(inputs: tuple[str, ...], **params: Any) -> None:
    """Fetch many URLs concurrently; write one record per input line, in input order.

    INPUTS are files with one URL (or ID, with --template) per line, or CSV or
    JSON Lines rows; '-' or none reads stdin. Blank lines and lines starting
    with # are skipped. Records go to stdout (or --output) as JSON Lines, a JSON
    array or CSV; progress and the summary go to stderr.
    """
    from fetchmany.cli.commandline import CommandLine  # not for --help: click answers it first

    args = curl_spellings(CommandLine(inputs=inputs, **params), click.get_current_context())
    if args.output == "-":
        args = dataclasses.replace(args, output=None)
    if args.merge:
        check_merge_options(click.get_current_context())
        merge_parts(args)
    args = shard_by(args, click.get_current_context())
    if args.allow_gaps or args.expect is not None:
        flag = "--allow-gaps" if args.allow_gaps else "--expect"
        raise click.UsageError(f"{flag} goes with --merge")
    processes = check_processes(args)
    job = prepare(args)
    try:
        if processes > 1:
            from fetchmany.cli.processes import usable_processes

            processes = usable_processes(job, processes)
        outcome = _run(job, use_uvloop=args.uvloop, processes=processes)
    except BaseException:
        job.writer.abandon()  # a no-op when the run already did
        raise
    if job.summary and not outcome.broken_pipe:
        from fetchmany.output.progress import summary_lines

        interrupted = outcome.signal is not None
        for line in summary_lines(outcome.stats, interrupted, resumed_file(job, outcome)):
            job.display.note(line)
    stopped = outcome.signal is not None and not outcome.broken_pipe
    if stopped and (note := kept_after_interruption(job, args)):
        job.display.note(note)
    _exit(outcome)


def curl_spellings(args: CommandLine, ctx: click.Context) -> CommandLine:
    """curl's spellings as fetchmany's own options: ``-I`` is ``-X HEAD``, ``--no-location``
    is ``--max-redirects 0`` (``-L`` asks for what is done anyway). A combination that
    contradicts itself is a usage error rather than one flag silently winning."""
    if args.head:
        if args.method is not None and args.method.upper() != "HEAD":
            raise click.UsageError(
                f"-I/--head sends HEAD and -X asks for {printable(args.method)}; drop one"
            )
        if args.data is not None or args.json is not None:
            flag = "--data" if args.data is not None else "--json"
            raise click.UsageError(f"-I/--head sends HEAD, which carries no body; drop {flag}")
        if args.save_dir is not None:
            raise click.UsageError(
                "-I/--head asks for no body, so --save-dir would have nothing to save; drop one"
            )
        args = dataclasses.replace(args, method="HEAD")
    if args.location is True and args.max_redirects == 0 and given(ctx, "max_redirects"):
        raise click.UsageError(
            "-L/--location follows redirects and --max-redirects 0 follows none; drop one"
        )
    if args.location is False:
        if args.max_redirects != 0 and given(ctx, "max_redirects"):
            raise click.UsageError(
                f"--no-location follows no redirect and --max-redirects {args.max_redirects} "
                "follows some; drop one"
            )
        args = dataclasses.replace(args, max_redirects=0)
    return args


def kept_after_interruption(job: Job, args: CommandLine) -> str | None:
    """After Ctrl-C or SIGTERM, what the -o file holds now and how to go on from it."""
    from fetchmany.cli.run import plural
    from fetchmany.output.resume import ResumeError, key_field

    output = job.writer.output
    if args.output is None or not output.to_file:
        return None  # stdout, or a stream such as a FIFO: nothing to continue
    shown = printable(args.output)
    if job.keeps_previous(interrupted=True):  # abandoned whole: see run.keeps_previous
        return f"fetchmany: {shown} is left as it was; the same command refreshes it again"
    if job.writer.written == 0 and output.discardable:  # abandoned: see run.keeps_nothing
        return f"fetchmany: no record was complete; {shown} is left as it was"
    held = job.writer.written + (job.resume.point.records if job.resume else 0)
    line = f"fetchmany: {shown} holds {plural(held, 'record')}"
    if job.refresh is not None:
        return f"{line}; --refresh cannot continue it: the same command starts it again"
    try:
        key_field(job.writer.fields)
    except ResumeError:
        return line  # --resume could not check them against the inputs
    if args.unordered:
        return line  # in completion order: --resume continues only ordered output
    if args.resume:
        return f"{line}; the same command continues it"
    return f"{line}; the same command with --resume continues it"


def resumed_file(job: Job, outcome: Outcome) -> FileTotals | None:
    """A resumed file's totals after the run: its records before, and this run's."""
    from fetchmany.output.stats import FileTotals

    resume = job.resume
    if resume is None or resume.point.records == 0:
        return None  # the file is this run's alone
    stats = outcome.stats
    failed = resume.point.failed + stats.failed if "ok" in resume.fields else None
    return FileTotals(resume.path, resume.point.records + stats.done, failed)


def shard_by(args: CommandLine, ctx: click.Context) -> CommandLine:
    """``--shard-by`` applied to ``--shard``; given without it, a usage error."""
    from click.core import ParameterSource

    given = ctx.get_parameter_source("shard_by") in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )
    if given and args.shard is None:
        raise click.UsageError("--shard-by goes with --shard K/N")
    if args.shard is None or args.shard_by.lower() != "host":
        return args
    return dataclasses.replace(args, shard=dataclasses.replace(args.shard, by_host=True))


# Options that shape fetching: with --merge, nothing is fetched, so giving one is a mistake.
_FETCH_ONLY: Final = (
    "template", "input_format", "dedupe", "limit", "per_host", "rate", "window", "window_bytes",
    "retries", "retry_on", "backoff", "max_backoff", "retry_all_methods", "method", "data",
    "json", "header", "user_agent", "timeout", "connect_timeout", "max_redirects",
    "max_body_size", "insecure", "proxy", "netrc", "ca_bundle", "pick", "save_dir",
    "save_name", "body", "unordered", "resume", "shard", "shard_by", "processes", "refresh",
    "tls", "head", "location", "max_time",
)  # fmt: skip


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or as FETCHMANY_*)."""
    from click.core import ParameterSource

    source = ctx.get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def check_merge_options(ctx: click.Context) -> None:
    for name in _FETCH_ONLY:
        if given(ctx, name):
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} does nothing with --merge, which fetches nothing")


def merge_parts(args: CommandLine) -> NoReturn:
    """``--merge``: the parts (INPUTS) as one output in index order; exits."""
    from fetchmany.fields import FIELDS
    from fetchmany.output.destination import Output, OutputClosed, OutputError
    from fetchmany.output.merge import MergedRecord, MergeError, check_parts, merged, open_part
    from fetchmany.output.writers import make_writer
    from fetchmany.signals import held_back

    if not args.inputs or "-" in args.inputs:
        raise click.UsageError("--merge reads record files: name them (stdin is not one)")
    check_output_is_not_an_input(args.output, args.inputs)
    from fetchmany.fetch.limits import fit_open_file_limit

    if fit_open_file_limit(len(args.inputs) + 8) < len(args.inputs) + 8:
        raise click.UsageError(
            f"{len(args.inputs)} parts are more files than this process may open at once; "
            "merge them in groups with --allow-gaps, then merge the groups"
        )
    try:
        parts = [open_part(path) for path in args.inputs]
        fields = check_parts(parts)
    except MergeError as exc:
        raise click.UsageError(str(exc)) from None
    if args.fields is not None:
        if unknown := [name for name in args.fields if fields and name not in fields]:
            raise click.UsageError(f"--fields names {unknown[0]!r}, which the parts do not hold")
        fields = args.fields
    destination: Output | None = None
    try:
        with held_back():  # a signal comes once the output is noted for cleanup
            destination = Output(args.output)
    except OutputClosed:
        _exit_broken_pipe()
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None
    except BaseException:
        if destination is not None:
            destination.abandon()
        raise
    count = failed = 0
    try:
        writer = make_writer(
            output_format_of(args), destination, fields or FIELDS, csv_safe=args.csv_safe
        )
        batch: list[MergedRecord] = []
        for values in merged(parts, allow_gaps=args.allow_gaps, expect=args.expect):
            batch.append(MergedRecord(values))
            count += 1
            failed += values.get("ok") is False
            if len(batch) == 1024:
                writer.write(batch)
                batch = []
        writer.write(batch)
        writer.close()
    except OutputClosed:
        destination.abandon()
        _exit_broken_pipe()
    except (MergeError, OutputError) as exc:
        writer.abandon()
        raise RunFailed(str(exc)) from None
    except BaseException:
        destination.abandon()  # what the writer's abandon does with nothing written
        raise
    if not args.quiet:
        click.echo(
            f"Merged {count} records from {len(parts)} parts"
            + (f"; {failed} not ok" if failed else ""),
            err=True,
        )
    sys.exit(EXIT_OK if failed == 0 else EXIT_FAILED)


def prepare(args: CommandLine) -> Job:
    """Every check that can fail before a request, in the order that leaves no trace:
    templates, fields and options, the session's files, then the output (last)."""
    from fetchmany.output.progress import make_display

    input_format = input_format_of(args)
    plan = build_plan(args, input_format)
    fields = choose_fields(args)
    try:
        options = args.fetch_options(plan.method, plan.content_type, plan.accept)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if args.resume and args.output is None:
        raise click.UsageError("--resume needs --output FILE to continue")
    if args.resume and args.unordered:
        raise click.UsageError("--resume continues input order; drop --unordered")
    if args.refresh is not None:
        check_refresh(args, options)
    check_output_is_not_an_input(args.output, args.inputs)
    setup = check_setup(options)
    limit = fit_open_files(options, args.processes)
    if limit != options.limit:
        auto = options.adaptive
        asked, used = (f"auto:{options.limit}", f"auto:{limit}") if auto else (options.limit, limit)
        if not args.quiet:
            click.echo(
                f"fetchmany: --limit {asked} needs more open files than this process "
                f"may have; using --limit {used}",
                err=True,
            )
        options = dataclasses.replace(
            options,
            limit=limit,
            adaptive=dataclasses.replace(auto, ceiling=limit) if auto is not None else None,
        )
    show_bar = (
        args.progress if args.progress is not None else (not args.quiet and _stderr_is_terminal())
    )
    if not args.inputs and _stdin_is_terminal() and not args.quiet:
        click.echo("fetchmany: reading items from the terminal; end with Ctrl-D", err=True)
    return build_job(args, fields, options, plan, setup, make_display(show_bar), input_format)


def check_refresh(args: CommandLine, options: FetchOptions) -> None:
    """What --refresh cannot be combined with, said before anything is opened."""
    from fetchmany.cli.processes import read_once
    from fetchmany.output.previous import same_file

    assert args.refresh is not None
    if args.resume:
        if same_file(args.refresh, args.output):
            raise click.UsageError(
                "--refresh in place writes the file whole and puts it in place at the end "
                "(an interrupted one leaves it as it was): there is nothing to --resume; "
                "drop --resume"
            )
        raise click.UsageError(
            "--resume continues --output and --refresh reads another file: a resumed file "
            "would mix records of two runs; drop --resume, or refresh in place "
            "(--refresh FILE -o FILE)"
        )
    if args.dedupe:
        raise click.UsageError(
            "--dedupe shares one answer between items, and --refresh asks for each item "
            "with its own record's ETag; use one or the other"
        )
    if options.http_method not in ("GET", "HEAD"):
        raise click.UsageError(
            f"--refresh makes GET and HEAD requests conditional; a {options.http_method} "
            "with If-None-Match is a precondition that can change nothing (412), not a refresh"
        )
    if read_once(list(args.inputs) or ["-"]):
        raise click.UsageError(
            "--refresh reads the input twice (it is checked against PREVIOUS before "
            "anything is fetched), so it must be a file: stdin and pipes are read once"
        )


def _stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def input_format_of(args: CommandLine) -> InputFormat:
    from fetchmany.input.rows import InputFormat, infer_input_format

    chosen = args.input_format
    return InputFormat(chosen.lower()) if chosen else infer_input_format(args.inputs)


def output_format_of(args: CommandLine) -> OutputFormat:
    from fetchmany.output.writers import OutputFormat, format_for_path

    if args.format:
        return OutputFormat(args.format.lower())
    return format_for_path(args.output) or OutputFormat.JSONL


def build_plan(args: CommandLine, input_format: InputFormat) -> RequestPlan:
    """Templates, method and content type, by the same policy the library uses."""
    from fetchmany.fetch.policy import check_save_name, plan_request
    from fetchmany.input.templates import TemplateError

    try:
        if args.save_dir is not None:
            check_save_name(args.save_name, input_format)
        return plan_request(
            template=args.template,
            data=args.data,
            json=args.json,
            method=args.method,
            headers=args.header,
            input_format=input_format,
        )
    except TemplateError as exc:
        raise click.UsageError(str(exc)) from None


def choose_fields(args: CommandLine) -> tuple[str, ...]:
    """--fields as given (checked), else the default for what this run records.

    Nothing asked for may be silently left out: a --pick that --fields does not name,
    or a body that --save-dir sends to files instead, is a usage error.
    """
    from fetchmany.fields import FIELDS, OPTIONAL_FIELDS, SAVED_FIELDS

    pick_names = tuple(p.name for p in args.pick)
    saved = SAVED_FIELDS if args.save_dir else ()
    asked = {
        "timings": args.timings,
        "headers": args.response_headers is not None,
        "redirects": args.redirects,
        "tls": args.tls,
        "unchanged": args.refresh is not None,
    }
    extra = tuple(name for name in OPTIONAL_FIELDS if asked[name])
    given = args.fields
    if given is not None:
        known = (
            *FIELDS,
            *(name for name in OPTIONAL_FIELDS if name != "unchanged" or asked[name]),
            *pick_names,
            *saved,
        )
        unknown = [name for name in given if name not in known]
        if unknown:
            hint = ""
            if unknown[0] in SAVED_FIELDS:
                hint = " (path and sha256 come with --save-dir)"
            elif unknown[0] == "unchanged":
                hint = " (unchanged comes with --refresh)"
            raise click.UsageError(
                f"unknown field {unknown[0]!r} for --fields; choose from {', '.join(known)}{hint}"
            )
        if left_out := [name for name in pick_names if name not in given]:
            raise click.UsageError(
                f"--pick {left_out[0]} is not in --fields; add it to --fields or drop the --pick"
            )
        # --refresh asks for conditional requests, not for the field: it may be left out.
        if left_out := [name for name in extra if name not in given and name != "unchanged"]:
            raise click.UsageError(
                f"{left_out[0]} was asked for but is not in --fields; add it to --fields"
            )
        if saved and "body" in given:
            raise click.UsageError(
                "--save-dir writes bodies to files, so records have no body; "
                "drop body from --fields (records get path and sha256)"
            )
        return given
    if pick_names:
        body = ("body",) if args.body is not None and not saved else ()
        validators = ("etag", "last_modified")  # so that any output can be refreshed
        return ("input", *pick_names, *saved, "ok", "status", "error", *validators, *extra, *body)
    if saved:
        return (*(f for f in FIELDS if f != "body"), *extra, *saved)
    if extra:
        return (*FIELDS[:-1], *extra, FIELDS[-1])  # before the body, which may be long
    return FIELDS


def check_output_is_not_an_input(output: str | None, inputs: tuple[str, ...]) -> None:
    """Writing over an input would destroy it mid-read; refuse before anything starts."""
    if output is None or not os.path.exists(output):
        return
    target = os.stat(output)
    for path in inputs or ("-",):
        try:
            source = os.fstat(STDIN_FD) if path == "-" else os.stat(path)
        except OSError:
            continue  # reading it will say what is wrong
        if os.path.samestat(source, target) and stat.S_ISREG(target.st_mode):
            what = "the input on stdin" if path == "-" else "an input"
            raise click.UsageError(
                f"--output {output} is also {what}; write the records to another file"
            )


def check_setup(options: FetchOptions) -> SessionSetup:
    """What would otherwise fail at the first request (a CA bundle with no certificate,
    a broken .netrc, a --save-dir that cannot be made) fails here, as a usage error.
    The setup is kept for the run, so nothing is read twice."""
    from fetchmany.fetch.session import SessionSetup, SetupError

    try:
        setup = SessionSetup.prepare(options)
    except SetupError as exc:
        raise click.UsageError(str(exc)) from None
    if options.save_dir is not None:
        try:
            os.makedirs(options.save_dir, exist_ok=True)
        except OSError as exc:
            raise click.UsageError(f"cannot create {options.save_dir}: {exc.strerror}") from None
    return setup


def fit_open_files(options: FetchOptions, processes: int) -> int:
    from fetchmany.fetch.limits import TooFewFiles, fit_open_file_limit

    per_request = 2 if options.save_dir is not None else 1  # a socket, and a body file
    # Under -P the parent holds a record pipe per worker and the copies of stdin.
    extra = 3 * processes if processes > 1 else 0
    try:
        return fit_open_file_limit(options.limit, per_request, extra)
    except TooFewFiles as exc:
        raise click.UsageError(str(exc)) from None


def build_job(
    args: CommandLine,
    fields: tuple[str, ...],
    options: FetchOptions,
    plan: RequestPlan,
    setup: SessionSetup,
    display: Display,
    input_format: InputFormat,
) -> Job:
    """Open the output (locked; a file to resume is checked) and assemble the run.

    The output is opened last, after every other check, so a usage error leaves no
    trace; if reading a file to resume then fails, the output is released untouched.
    """
    from fetchmany.cli.run import Job, Resume
    from fetchmany.output.destination import Output, OutputClosed, OutputError
    from fetchmany.output.writers import make_writer
    from fetchmany.signals import held_back

    path = args.output
    out_format = output_format_of(args)
    chosen = fields
    if args.resume and args.fields is None and path is not None:
        fields = earlier_fields(path, fields)
    previous = open_previous(args, fields, out_format)
    destination: Output | None = None
    try:
        with held_back():  # a signal comes once the output is noted for cleanup
            destination = Output(path, resume=args.resume)
        resume = None
        if args.resume and not destination.resumable:
            raise click.UsageError(
                f"--resume continues a regular file, and {path} is not one; "
                "write to a file, or run without --resume"
            )
        if destination.resumable:
            assert path is not None
            from fetchmany.output.resume import ResumeError, scan

            try:
                point = scan(path, out_format, fields, args.shard)
            except ResumeError as exc:
                raise click.UsageError(str(exc)) from None
            destination.start_at(point.offset)
            if fields != chosen and not args.quiet:
                display.note(
                    f"{path} was written without etag and last_modified (by an earlier "
                    "fetchmany): resuming it with its own fields"
                )
            resume = Resume(path, out_format, fields, point, csv_safe=args.csv_safe)
        writer = make_writer(out_format, destination, fields, csv_safe=args.csv_safe)
        return Job(
            inputs=args.inputs,
            request=plan.templates,
            options=options,
            writer=writer,
            display=display,
            resume=resume,
            grace=args.grace,
            input_format=input_format,
            setup=setup,
            shard=args.shard,
            refresh=previous,
            summary=not args.quiet,
        )
    except OutputClosed:
        _exit_broken_pipe()
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None
    except BaseException:  # a usage error, Ctrl-C or SIGTERM while the file is scanned
        if destination is not None:
            destination.abandon()
        raise


def earlier_fields(path: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The fields to resume ``path`` with: this run's default, or, for a file written by a
    fetchmany from before etag and last_modified were fields, that file's own, so that a
    run started before an upgrade can be finished by it."""
    from fetchmany.output.merge import MergeError, open_part

    older = tuple(name for name in fields if name not in ("etag", "last_modified"))
    if older == fields or not os.path.isfile(path):
        return fields
    try:
        part = open_part(path)
    except MergeError:
        return fields  # the resume's own check says what is wrong with it
    return older if part.fields == older else fields


def open_previous(
    args: CommandLine, fields: tuple[str, ...], out_format: OutputFormat
) -> PreviousOutput | None:
    """--refresh's PREVIOUS, checked as far as its start tells (before the output is
    opened: a refusal leaves no trace)."""
    if args.refresh is None:
        return None
    from fetchmany.output.previous import PreviousOutput, RefreshError, same_file

    try:
        return PreviousOutput.open(
            args.refresh,
            fields,
            [pick.name for pick in args.pick],
            out_format,
            in_place=same_file(args.refresh, args.output),
            shard=args.shard,
        )
    except RefreshError as exc:
        raise click.UsageError(str(exc)) from None


class RunFailed(click.ClickException):
    """The run could not go on (its output cannot be written, a worker died, a later
    input cannot be read): one line, and the output is incomplete."""

    exit_code = EXIT_INCOMPLETE


def check_processes(args: CommandLine) -> int:
    """-P with what cannot be split between processes is a usage error."""
    if args.processes == 1:
        return 1
    if args.shard is not None:
        raise click.UsageError("-P runs shards itself; drop --shard (or run shards with -P 1)")
    if args.save_dir is not None and not args.save_name.startswith("{index}"):
        raise click.UsageError(
            "with -P, --save-name must start with {index}: names are made distinct per process"
        )
    return args.processes


def _run(job: Job, use_uvloop: bool, processes: int = 1) -> Outcome:
    import asyncio

    from fetchmany.cli.loop import loop_factory, tune_collector
    from fetchmany.cli.run import Interruption, run_job
    from fetchmany.signals import held_back, ignore_stops

    tune_collector()
    try:
        with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
            # The run takes SIGINT and SIGTERM before it starts: none falls between.
            interruption = Interruption(runner.get_loop(), job.display, job.grace)
            interruption.install()
            try:
                if job.refresh is not None:
                    runner.run(check_previous(job))
                if processes > 1:
                    from fetchmany.cli.processes import run_parallel

                    return runner.run(run_parallel(job, processes, interruption))
                return runner.run(run_job(job, interruption))
            finally:
                with held_back():  # never the default action in between
                    interruption.uninstall()
                    ignore_stops()
    except Exception as exc:
        failure = _run_failure(exc)
        if failure is None:
            raise
        raise failure from None


def _run_failure(exc: Exception) -> click.UsageError | RunFailed | None:
    """What an error that ended a run means for the command: a refusal (a usage error,
    the output untouched) or a run that stopped (incomplete); None for any other, which
    is raised as it is. The error classes are imported here, when one is raised, so a
    run that meets none never imports --resume's, --refresh's or -P's modules."""
    from fetchmany.cli.processes import WorkerFailed, WorkerRefused
    from fetchmany.input.rows import InputError
    from fetchmany.input.sources import InputUnreadable
    from fetchmany.output.destination import OutputError
    from fetchmany.output.previous import RefreshError
    from fetchmany.output.resume import ResumeError
    from fetchmany.records import valid_text

    if isinstance(exc, ResumeError | InputError | WorkerRefused | RefreshError):
        if isinstance(exc, InputError | WorkerRefused) and exc.later:
            # Not the first input: what came before it may have been fetched (and written),
            # so the run has begun and stopped: incomplete, as for a full disk.
            return RunFailed(valid_text(str(exc)))
        return click.UsageError(str(exc))
    if isinstance(exc, OutputError | InputUnreadable | WorkerFailed):
        return RunFailed(valid_text(str(exc)))
    return None


async def check_previous(job: Job) -> None:
    """Read the whole input against --refresh's PREVIOUS before anything is fetched, so
    that one that does not match refuses the run with nothing fetched (as --resume
    does). The reader threads are waited for: -P forks next, and a fork copies no
    thread."""
    import threading
    from contextlib import aclosing

    from fetchmany.input.sources import read_items

    assert job.refresh is not None
    try:
        # Closed however the check ends, so its reader stops at once on a refusal.
        async with aclosing(
            read_items(job.inputs, job.request, job.input_format, job.shard)
        ) as items:
            await job.refresh.check(items, job.shard)
    finally:
        for thread in threading.enumerate():
            if thread.name == "fetchmany-reader":
                thread.join(5)


def _exit(outcome: Outcome) -> NoReturn:
    if outcome.broken_pipe:
        _exit_broken_pipe()
    if outcome.signal is not None:
        sys.exit(128 + outcome.signal)
    sys.exit(EXIT_OK if outcome.stats.failed + outcome.earlier_failures == 0 else EXIT_FAILED)


def _exit_broken_pipe() -> NoReturn:
    """The reader of stdout went away: point stdout at /dev/null so the interpreter's
    final flush cannot print 'Exception ignored ... BrokenPipeError', and exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, STDOUT_FD)
    os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


STDIN_FD, STDOUT_FD, STDERR_FD = 0, 1, 2


def _fill_closed_standard_streams() -> None:
    """Put /dev/null on a standard descriptor the caller closed (``>&-``).

    Otherwise the next file or socket opened would get that number, and anything
    meant for stdout or stderr would land in it. Python has already set the
    matching ``sys`` stream to None: stdout then refuses to be the output (a usage
    error), a closed stderr just means nothing is shown.
    """
    for fd in (STDIN_FD, STDOUT_FD, STDERR_FD):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(message: str) -> str:
    """A message fit for a terminal: control characters (an escape sequence read from a
    file or a URL) shown as ``\\xNN`` instead of acted on."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: usage errors are one line and exit 2, a run that
    cannot go on is one line and exit 75, never a traceback."""
    _fill_closed_standard_streams()
    stop_at_once()  # until the run's loop takes them: abandon what is open and exit
    try:
        cli.main(
            args=argv,
            prog_name="fetchmany",
            standalone_mode=False,
            auto_envvar_prefix="FETCHMANY",
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.NoSuchOption as exc:
        from fetchmany.cli.habits import elsewhere

        hint = elsewhere(exc.option_name)
        message = f"No such option '{exc.option_name}'; {hint}" if hint else exc.format_message()
        _say(f"fetchmany: {printable(message)}")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        _say(f"fetchmany: {printable(exc.format_message())}")
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(128 + signal.SIGINT)
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    except BrokenPipeError:
        _exit_broken_pipe()
    except Exception as exc:  # a bug: one line, unless asked for the traceback
        if os.environ.get("FETCHMANY_DEBUG"):
            raise
        from fetchmany.redaction import redact_text

        _say(
            f"fetchmany: internal error: {type(exc).__name__}: {printable(redact_text(str(exc)))} "
            "(a bug; FETCHMANY_DEBUG=1 shows where, please report it)"
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)


def _say(line: str) -> None:
    """The one line of an error on stderr; if stderr cannot take it (2>/dev/full), the
    exit status still says what happened."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(line, err=True)
