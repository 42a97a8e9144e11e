"""``FetchOptions`` and ``RetryPolicy`` take plain Python, checked once, as the CLI checks it.

A caller gives headers as a dict, a rate as ``"10/s"``, sizes as ``"10MB"``; anything
of the wrong kind or out of range is one ``TypeError`` or ``ValueError`` naming the
setting and what it takes, at construction, never an ``AttributeError`` or a crash
deep in a run (a property over values of every kind, each accepted one run for real).
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import math
import os
import random
import typing
from pathlib import Path
from typing import Any

import pytest
from conftest import LoopbackServer, run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fetchmany
from fetchmany import Adaptive, BodyMode, FetchOptions, Record, RetryPolicy, fetch_many
from fetchmany.fetch.picks import Pick


def test_plain_python_becomes_the_fields_types() -> None:
    options = FetchOptions(
        headers={"Accept": "application/json", "X-Team": "data"},
        rate="600/m",
        window_bytes="1MiB",
        max_body_size="10KB",
        body="json",
        picks=["title=0.title"],
        response_headers=["ETag", "Content-Type"],
        ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
        retry=RetryPolicy(retry_on="429, 503", retries=1),
        max_time=2,
    )
    assert options.headers == (("Accept", "application/json"), ("X-Team", "data"))
    assert options.rate == 10.0
    assert (options.window_bytes, options.max_body_size) == (1024 * 1024, 10_000)
    assert options.body is BodyMode.JSON
    assert options.picks == (Pick("title", ("0", "title")),)
    assert options.response_headers == frozenset({"etag", "content-type"})
    assert options.ca_bundle == "/etc/ssl/certs/ca-certificates.crt"
    assert options.retry.retry_on == frozenset({429, 503})
    assert options.max_time == 2.0
    # Pairs, numbers, a mapping of picks and "all" are taken too; so is the internal form.
    assert FetchOptions(headers=[("A", "1"), ("A", "2")]).headers == (("A", "1"), ("A", "2"))
    assert FetchOptions(rate=5).rate == 5.0
    assert FetchOptions(picks={"t": "0.title"}).picks == (Pick("t", ("0", "title")),)
    assert FetchOptions(response_headers="all") == FetchOptions(response_headers=["*"])
    assert RetryPolicy(retry_on=[503]).retry_on == frozenset({503})
    assert dataclasses.replace(options, limit=3).headers == options.headers


async def test_a_mapping_of_headers_and_a_rate_as_text_reach_the_server(
    server: LoopbackServer,
) -> None:
    options = FetchOptions(headers={"Accept": "application/json", "X-Team": "data"}, rate="50/s")
    records = [r async for r in fetch_many([server.url("/echo")] * 3, options)]
    assert [r.ok for r in records] == [True, True, True]
    seen = records[0].body["headers"]
    assert (seen["Accept"], seen["X-Team"]) == ("application/json", "data")


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"rate": "fast"}, ValueError, "rate: not a rate: 'fast' (try 20, 20/s, 600/m)"),
        ({"rate": "10/x"}, ValueError, "rate: not a rate: '10/x' (try 20, 20/s, 600/m)"),
        ({"rate": 0}, ValueError, "rate: not a rate: 0 (try 20, 20/s, 600/m)"),
        ({"rate": [10]}, TypeError, "rate: must be a number per second or text such as '10/s', got [10] (list)"),
        ({"limit": 2.5}, TypeError, "limit: must be a whole number, got 2.5"),
        ({"limit": "5"}, TypeError, "limit: must be a whole number, got '5'"),
        ({"limit": True}, TypeError, "limit: must be a whole number, got True"),
        ({"limit": 10**30}, ValueError, "limit: must be from 1 to 100,000, got 1000000000000000000000000000000"),
        ({"limit": 0}, ValueError, "limit: must be from 1 to 100,000, got 0"),
        ({"timeout": None}, TypeError, "timeout: must be a number of seconds, got None"),
        ({"timeout": math.inf}, ValueError, "timeout: must be a finite number of seconds above 0, got inf"),
        ({"max_time": 0}, ValueError, "max_time: must be a finite number of seconds above 0, got 0"),
        ({"max_time": math.nan}, ValueError, "max_time: must be a finite number of seconds above 0, got nan"),
        ({"max_time": "1"}, TypeError, "max_time: must be a number of seconds, got '1'"),
        ({"window_bytes": math.inf}, TypeError, "window_bytes: must be a number of bytes or text such as '10MB', got inf"),
        ({"max_body_size": "lots"}, ValueError, "max_body_size: not a size: 'lots' (try 500KB, 10MB, 1GB)"),
        ({"headers": "Accept: x"}, TypeError, "headers: must be a mapping of name to value, or (name, value) pairs; got 'Accept: x'"),
        ({"headers": {"Accept": 1}}, TypeError, "headers: a header is a name and a value, both text; got ('Accept', 1) (tuple)"),
        ({"headers": {"Bad Name": "x"}}, ValueError, "headers: not a header name: 'Bad Name'"),
        ({"headers": {"X-A": "a\r\nX-B: 1"}}, ValueError, "headers: header value contains a control character ('\\r'): 'X-A: a\\r\\nX-B: 1'"),
        ({"headers": [("A",)]}, TypeError, "headers: each header is a (name, value) pair, got ('A',) (tuple)"),
        ({"user_agent": "a\r\nX: 1"}, ValueError, "user_agent: must be text without control characters"),
        ({"method": 5}, TypeError, "method: must be text (str), got 5"),
        ({"method": "GET /x"}, ValueError, "method: not an HTTP method: 'GET /x'"),
        ({"body": "xml"}, ValueError, "body: must be one of auto, text, json, base64, none; got 'xml'"),
        ({"ordered": "yes"}, TypeError, "ordered: must be True or False, got 'yes'"),
        ({"retry": {"retries": 1}}, TypeError, "retry: must be a RetryPolicy, got {'retries': 1} (dict)"),
        ({"adaptive": "auto"}, TypeError, "adaptive: must be an Adaptive (for --limit auto) or None, got 'auto'"),
        ({"picks": ["title"]}, ValueError, "picks: expected NAME=PATH with NAME a plain word, got 'title'"),
        ({"picks": ["ok=a"]}, ValueError, "picks: 'ok' is a field of every record; give the pick another name"),
        ({"picks": "t=a"}, TypeError, "picks: must be NAME=PATH texts, Picks or a mapping of NAME to PATH; got 't=a'"),
        ({"picks": [b"t=a"]}, TypeError, "picks: each pick is NAME=PATH text or a Pick of text, got b't=a' (bytes)"),
        ({"response_headers": [1]}, TypeError, "response_headers: must be header names (text), got [1] (list)"),
        ({"ca_bundle": 5}, TypeError, "ca_bundle: must be a path (str or pathlib.Path), got 5"),
        ({"save_dir": "out\x00"}, ValueError, "save_dir: a path cannot hold a NUL character, got 'out\\x00'"),
        ({"ca_bundle": Path("ca\x00.pem")}, ValueError, "ca_bundle: a path cannot hold a NUL character, got 'ca\\x00.pem'"),
        ({"proxy": "user:hunter2@proxy.test:8080"}, ValueError, "proxy: must be an http(s):// or socks:// URL, got '****@proxy.test:8080'"),
        ({"method": "HEAD", "save_dir": "d"}, ValueError, "HEAD answers have no body to save; drop --save-dir or -X HEAD"),
    ],
)  # fmt: skip
def test_a_wrong_value_is_one_error_naming_the_setting(
    given: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        FetchOptions(**given)
    assert type(raised.value) is error
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"retries": -1}, ValueError, "retries: must be at least 0, got -1"),
        ({"retries": 1.5}, TypeError, "retries: must be a whole number, got 1.5"),
        ({"retry_on": "5xx"}, ValueError, "retry_on: not an HTTP status: '5xx'"),
        ({"retry_on": [600]}, ValueError, "retry_on: not an HTTP status: 600"),
        ({"retry_on": 503}, TypeError, "retry_on: must be HTTP statuses (numbers, or text such as '429,503'), got 503"),
        ({"backoff": -0.5}, ValueError, "backoff: must be a finite number of seconds from 0, got -0.5"),
        ({"max_backoff": math.inf}, ValueError, "max_backoff: must be a finite number of seconds from 0, got inf"),
        ({"retry_all_methods": 1}, TypeError, "retry_all_methods: must be True or False, got 1"),
        ({"rng": 1}, TypeError, "rng: must be a random.Random, got 1"),
    ],
)  # fmt: skip
def test_a_wrong_retry_setting_is_one_error_naming_it(
    given: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        RetryPolicy(**given)
    assert (type(raised.value), str(raised.value)) == (error, message)


@pytest.mark.parametrize(
    ("argv", "library"),
    [
        (["--rate", "fast"], {"rate": "fast"}),
        (["--max-body-size", "lots"], {"max_body_size": "lots"}),
        (["--per-host", "0"], {"per_host": 0}),
        (["--limit", "0"], {"limit": 0}),
        (["-m", "inf"], {"max_time": math.inf}),
        (["--timeout", "0"], {"timeout": 0}),
        (["--max-redirects", "-1"], {"max_redirects": -1}),
        (["--window-bytes", "0"], {"window_bytes": "0"}),
        (["-X", "GET /x"], {"method": "GET /x"}),
        (["--proxy", "user:hunter2@proxy.test:8080"], {"proxy": "user:hunter2@proxy.test:8080"}),
        (["--pick", "ok=a"], {"picks": ["ok=a"]}),
        (["--response-headers", "a b"], {"response_headers": "a b"}),
        (["-H", "X-A:\x1b"], {"headers": {"X-A": "\x1b"}}),
        (["--retry-on", "5xx"], {"retry": {"retry_on": "5xx"}}),
        (["--retries", "-1"], {"retry": {"retries": -1}}),
        (["--backoff", "-1"], {"retry": {"backoff": -1}}),
    ],
)
def test_the_command_line_and_the_library_refuse_alike(
    argv: list[str], library: dict[str, Any]
) -> None:
    """One check per setting: the CLI's message is the library's, after the name."""
    result = run_cli(*argv, stdin=b"")
    assert result.returncode == 2
    make: Any = RetryPolicy if "retry" in library else FetchOptions
    with pytest.raises((TypeError, ValueError)) as raised:
        make(**library.get("retry", library))
    _, _, words = str(raised.value).partition(": ")
    assert result.stderr.rstrip("\n").endswith(f": {words}"), (result.stderr, words)


def test_the_typed_constructor_lists_every_field() -> None:
    """``FetchOptions`` and ``RetryPolicy`` tell type checkers what a caller may give in a
    ``__init__`` seen only by them (the runtime one is the dataclass'): it must name
    every field, or mypy would refuse a setting that works."""
    for cls in (FetchOptions, RetryPolicy):
        tree = ast.parse(inspect.getsource(cls))
        stubs = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == "__init__"
        ]
        assert len(stubs) == 1
        given = [arg.arg for arg in stubs[0].args.kwonlyargs]
        assert given == [f.name for f in dataclasses.fields(cls) if f.init]


def test_every_type_a_caller_needs_is_importable_from_the_package() -> None:
    for name in fetchmany.__all__:
        assert getattr(fetchmany, name) is not None
    for name in ("RetryPolicy", "Adaptive", "Settled", "ErrorKind", "BodyMode", "Record"):
        assert name in fetchmany.__all__
    assert "plan_request" not in (fetch_many.__doc__ or "")
    # Docstrings of the public API name public things only.
    for name in ("fetch_many", "fetch_batches", "FetchOptions", "RetryPolicy"):
        doc = inspect.getdoc(getattr(fetchmany, name)) or ""
        assert "policy." not in doc, name
        assert "plan_request" not in doc, name


# Values of every kind, the plausible-but-wrong first: hypothesis shrinks toward them.
_ODD = st.one_of(
    st.sampled_from(
        [None, True, 0, -1, 2.5, math.nan, math.inf, "", "5", "10/s", "auto", b"x", (), [],
         {}, ("a", "b"), [("a", "b")], {"a": 1}, {"A": "b"}, object(), BodyMode.NONE,
         Adaptive(), RetryPolicy(), Path("x")]
    ),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(-1, 600), st.text(max_size=6)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=6), st.integers()), max_size=2),
    st.tuples(st.text(max_size=4), st.text(max_size=4)),
    st.frozensets(st.integers(-1, 600), max_size=3),
)  # fmt: skip
_FIELDS = [f.name for f in dataclasses.fields(FetchOptions)]
# Values each setting takes, the odd ones among them, so that many drawn options run.
_TAKEN: dict[str, list[Any]] = {
    "limit": [1, 3],
    "adaptive": [Adaptive(), Adaptive(ceiling=1, start=1)],
    "window": [1, 2],
    "window_bytes": [1, "1KB"],
    "method": ["HEAD", "OPTIONS", "brew", "post"],
    "headers": [{"Host": "x"}, {"Content-Length": "5"}, {"Connection": "close"},
                {"Transfer-Encoding": "chunked"}, {"Accept-Encoding": "br"}, [("Cookie", "")]],
    "user_agent": ["", "\t"],
    "timeout": [1e-9, 0.5],
    "connect_timeout": [1e-9],
    "max_time": [1e-9, 0.5],
    "max_redirects": [0],
    "body": [*BodyMode, "JSON"],
    "max_body_size": [0, "0", "1"],
    "rate": [1e-9, "1/h", 1e9],
    "per_host": [1],
    "ca_bundle": ["/nonexistent", os.devnull],
    "content_type": ["", "text/plain"],
    "accept": ["", "*/*"],
    "proxy": ["http://127.0.0.1:1", "socks5://127.0.0.1:1"],
    "picks": [{"a": ""}, ["a=0.-1.x"], [Pick("b", ())]],
    "save_dir": ["saved", Path("saved/deeper")],
    "save_name": ["", "{nope}", "../{index}", "{index}{index}"],
    "response_headers": ["all", ["*"], "date"],
}  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), name=st.sampled_from(_FIELDS))
def test_any_value_is_refused_at_once_or_runs(
    server: LoopbackServer, tmp_path: Path, data: st.DataObject, name: str
) -> None:
    """Whatever a caller passes for any setting: a TypeError or ValueError naming it,
    right away, or options that run to one record per item (no AttributeError, no
    exception from deep in the run)."""
    base: dict[str, Any] = {
        "timeout": 0.5,  # a request that waits for a body it never gets ends soon
        "env_proxy": False,
        "retry": RetryPolicy(retries=0, rng=random.Random(0)),
    }
    value = data.draw(st.one_of(_ODD, st.sampled_from(_TAKEN.get(name, [True, False]))))
    try:
        options = FetchOptions(**{**base, name: value})
    except (TypeError, ValueError) as exc:
        refused: str | None = str(exc)
    else:
        refused = None
    if refused is not None:
        assert refused.startswith(f"{name}: "), refused
        event("refused")
        return
    event("ran")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a --save-dir drawn as text lands here
    try:
        records: list[Record] | str = asyncio.run(_collect([server.url("/echo"), "nope"], options))
    except ValueError as exc:  # the run's set-up: a ca_bundle that is no CA bundle
        records = str(exc)
    finally:
        os.chdir(cwd)
    if isinstance(records, str):
        assert name == "ca_bundle", records
        return
    indexes = [record.index for record in records]
    # ordered=False hands records out as they complete: "nope" may come first.
    assert indexes == [0, 1] if options.ordered else sorted(indexes) == [0, 1]
    invalid = next(record for record in records if record.index == 1)
    assert invalid.error is not None
    assert invalid.error.kind == "invalid_url"


async def _collect(items: list[str], options: FetchOptions) -> list[Record]:
    return [record async for record in fetch_many(items, options)]


@pytest.mark.parametrize(
    "name", [n for n in fetchmany.__all__ if isinstance(getattr(fetchmany, n), type)]
)
def test_the_public_types_hints_resolve_at_run_time(name: str) -> None:
    """Found by a hostile tester: a field annotated with a name imported only for the type
    checker (to spare --help an import) made ``typing.get_type_hints(FetchOptions)``
    raise NameError, which tools that read hints at run time (pydantic, cattrs,
    typeguard) call."""
    cls = getattr(fetchmany, name)
    assert isinstance(typing.get_type_hints(cls), dict)
    if dataclasses.is_dataclass(cls):
        assert set(typing.get_type_hints(cls)) >= {f.name for f in dataclasses.fields(cls)}
