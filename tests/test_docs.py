"""The README and docs/ against the code: their Python runs, their commands parse, and every
option, field, error kind and setting they must list is there, so they cannot drift.

The README's Python blocks are taken from README.md as they stand, run for real against
the sample API on 127.0.0.1 (the README's address rewritten to the port it got), and
checked with ``mypy --strict``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from conftest import run_process

from fetchmany import ErrorKind, FetchOptions
from fetchmany.cli.command import EPILOG, cli
from fetchmany.cli.habits import ELSEWHERE
from fetchmany.cli.options import GroupedOption

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SAMPLE_ADDRESS = "127.0.0.1:8080"
"""Where the README's examples expect ``python sample_inputs/sample_api.py --port 8080``."""


def code_blocks(path: Path, language: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown file (of one language, if given)."""
    blocks = re.findall(r"(?ms)^```(\w*)\n(.*?)^```", path.read_text())
    return [body for lang, body in blocks if language is None or lang == language]


@pytest.fixture(scope="module")
def sample_api() -> Iterator[str]:
    """The README's sample API on a free port: its ``host:port``."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "sample_inputs" / "sample_api.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first.startswith("http://127.0.0.1:"), first
    yield first.removeprefix("http://")
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def readme_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's Python blocks, in order, as one program."""
    blocks = code_blocks(README, "python")
    assert blocks, "the README has no Python example"
    path = tmp_path_factory.mktemp("readme") / "readme_example.py"
    path.write_text("\n".join(blocks))
    return path


def test_the_readme_python_runs_against_the_sample_api(
    readme_python: Path, sample_api: str, tmp_path: Path
) -> None:
    """Fetch, stop early, read the settled limits: what the README shows, for real."""
    program = tmp_path / "example.py"
    program.write_text(readme_python.read_text().replace(SAMPLE_ADDRESS, sample_api))
    run = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=50, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # leaving a run early prints nothing
    titles, failure, settled = run.stdout.splitlines()
    assert titles == str(
        ["quasi quo aut facere", "facere qui provident", "quasi repellat dolorem esse"]
    )
    assert failure.startswith("('not-a-number', 400, FetchError(kind=<ErrorKind.HTTP: 'http'>")
    assert re.fullmatch(rf"100 records; {re.escape(sample_api)} settled at \d+ \(.+\)", settled)


def test_the_readme_python_is_typed(readme_python: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         str(readme_python)],
        capture_output=True, text=True, timeout=55, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def commands(path: Path) -> Iterator[list[str]]:
    """The arguments of every ``fetchmany`` command in a file's code blocks (continued
    lines joined, up to a pipe, a redirection or a comment)."""
    for block in code_blocks(path):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.removeprefix("$ ").strip()
            if "fetchmany" not in line or line.startswith(("{", "#")):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            while "fetchmany" in tokens:
                tokens = tokens[tokens.index("fetchmany") + 1 :]
                args = []
                for token in tokens:
                    if token in ("|", ">", "<", "&&", ";", "2>"):
                        break
                    args.append(token)
                yield args


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_command_in_the_docs_parses(path: Path) -> None:
    """A renamed option, a value its type refuses, a flag that takes none given one: the
    docs' commands are read by fetchmany's own parser and types (files aside)."""
    found = 0
    for args in commands(path):
        found += 1
        ctx = click.Context(cli, info_name="fetchmany", **cli.context_settings)
        try:
            values, _, _ = cli.make_parser(ctx).parse_args(list(args))
        except click.UsageError as exc:
            raise AssertionError(f"{path.name}: fetchmany {shlex.join(args)}: {exc}") from None
        for param in cli.params:
            if param.name in values and not isinstance(param.type, click.Path):
                param.type_cast_value(ctx, values[param.name])
    assert found or path.name not in ("README.md", "reference.md", "scale-out.md")


def test_every_spelling_in_the_coming_from_tables_is_an_option() -> None:
    """The fetchmany column of docs/coming-from.md names options that exist."""
    spelled = 0
    for row in re.findall(r"(?m)^\| (.+) \|$", (ROOT / "docs" / "coming-from.md").read_text()):
        cells = row.split(" | ")
        if len(cells) < 2:
            continue
        for span in re.findall(r"`([^`]+)`", cells[1]):
            words = shlex.split(span.removeprefix("fetchmany "))
            for word in words:
                if not word.startswith("-") or word == "-":
                    continue
                flag = word.partition("=")[0]
                ctx = click.Context(cli, info_name="fetchmany", **cli.context_settings)
                parser = cli.make_parser(ctx)
                known = {*parser._long_opt, *parser._short_opt}
                assert flag in known, f"coming-from.md names {flag}, no option of fetchmany's"
                spelled += 1
    assert spelled > 40


def _examples() -> list[str]:
    lines = EPILOG.split("Examples")[1].split("\n\n")[0].splitlines()[1:]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [" ".join(line.split()) for line in text.splitlines()]


def test_the_help_examples_are_the_docs(sample_api: str) -> None:
    """Each example of ``--help`` is a command of the README, as written there (spacing
    and continued lines aside)."""
    written = set()
    for path in (README,):
        for block in code_blocks(path):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                line = line.removeprefix("$ ").split("   #")[0]
                written.add(" ".join(line.split()))
    examples = _examples()
    assert len(examples) >= 8
    for example in examples:
        assert example in written, example
    assert any(".body[0].title" in example for example in examples)


def test_every_option_has_an_entry_with_an_example() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    entries = re.split(r"(?m)^#### ", reference)[1:]
    for param in cli.params:
        if not isinstance(param, GroupedOption):
            continue
        names = [*param.opts, *param.secondary_opts]
        entry = next((e for e in entries if f"`{names[0]}" in e.splitlines()[0]), None)
        assert entry is not None, f"no reference entry for {names[0]}"
        examples = "\n".join(re.findall(r"(?ms)^```\w*\n(.*?)^```", entry))
        assert any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", examples) for n in names), (
            f"the entry for {names[0]} has no example using it"
        )


def test_the_docs_list_every_error_kind_flag_and_setting() -> None:
    records = (ROOT / "docs" / "records.md").read_text()
    for kind in ErrorKind:
        assert f"| `{kind.value}` |" in records, kind
    library = (ROOT / "docs" / "library.md").read_text()
    for field in dataclasses.fields(FetchOptions):
        assert f"| `{field.name}` |" in library, field.name
    coming_from = (ROOT / "docs" / "coming-from.md").read_text()
    for flag in ELSEWHERE:
        assert re.search(rf"`{re.escape(flag)}[` ]", coming_from), flag


def test_the_link_check_example_is_what_csv_holds(sample_api: str, tmp_path: Path) -> None:
    """The README's link check, run for real: its CSV is the README's, a redirect chain a
    JSON array in its cell (not an arrow drawing), a dead link its error kind."""
    command = next(args for args in commands(README) if "-I" in args and "--fields" in args)
    shown = next(b for b in code_blocks(README, "csv") if "redirects" in b.splitlines()[0])
    rows = list(csv.DictReader(io.StringIO(shown.replace(SAMPLE_ADDRESS, sample_api))))
    links = tmp_path / "links.txt"
    links.write_text("".join(f"{row['input']}\n" for row in rows))
    out = tmp_path / "links.csv"
    args = [
        str(links) if a == "links.txt" else str(out) if a == "links.csv" else a for a in command
    ]
    run = run_process(*args, "--retries", "0", "-q")
    assert run.returncode == 1, run.stderr  # the dead link
    got = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(got[0]) == list(rows[0])
    assert got[0] == rows[0]
    hops = json.loads(got[0]["redirects"])
    assert [hop["status"] for hop in hops] == [302, 302]
    assert (got[1]["error"], got[1]["status"]) == (rows[1]["error"], "") == ("connect", "")
    for path in (README, ROOT / "docs" / "records.md"):
        assert "→" not in path.read_text()
