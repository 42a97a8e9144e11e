"""One request policy for the CLI and the library: the same inputs send the same requests."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import LoopbackServer, jsonl, run_cli

from fetchmany import FetchOptions, Record, fetch_many
from fetchmany.fetch.policy import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, plan_request
from fetchmany.input.rows import InputFormat
from fetchmany.input.templates import TemplateError


@pytest.mark.parametrize(
    ("kwargs", "method", "content_type"),
    [
        ({}, "GET", None),
        ({"data": "a={}"}, "POST", FORM_CONTENT_TYPE),
        ({"json": '{"a": {id}}'}, "POST", JSON_CONTENT_TYPE),
        ({"json": '{"a": {id}}', "method": "PUT"}, "PUT", JSON_CONTENT_TYPE),
        ({"data": "a={}", "headers": (("content-type", "text/plain"),)}, "POST", None),
    ],
)
def test_method_and_content_type(kwargs: dict[str, object], method: str, content_type: str) -> None:
    plan = plan_request(template="http://h.test/{}", **kwargs)  # type: ignore[arg-type]
    assert (plan.method, plan.content_type) == (method, content_type)


@pytest.mark.parametrize(
    ("headers", "accept"),
    [
        ((), JSON_CONTENT_TYPE),
        ((("Content-Type", "application/vnd.api+json"),), JSON_CONTENT_TYPE),
        ((("accept", "text/csv"),), None),  # -H's Accept is sent as given, alone
        ((("ACCEPT", "*/*"),), None),
    ],
)
def test_a_json_body_asks_for_json_back_unless_h_says_otherwise(
    headers: tuple[tuple[str, str], ...], accept: str | None
) -> None:
    """--json sends Accept: application/json, as curl's --json does; a -H Accept in any
    case replaces it (two Accept headers would leave the server to pick)."""
    assert plan_request(json='{"a": {id}}', headers=headers).accept == accept
    assert plan_request(data="a={}", headers=headers).accept is None


def test_a_template_with_nothing_to_fill_is_refused_saying_why() -> None:
    """A URL template with no placeholder would fetch one URL for every line; in --json,
    a bare {} is an empty object, not a placeholder, and the message says so whole."""
    with pytest.raises(TemplateError) as refused:
        plan_request(template="http://h.test/x", json='{"a": {}}')
    assert str(refused.value) == (
        "template has no placeholder ({} or {id}): 'http://h.test/x'"
        ' (in --json, {} outside a string is an empty object: write {id} or "{}")'
    )
    with pytest.raises(TemplateError) as refused:
        plan_request(template="http://h.test/x")
    assert str(refused.value) == "template has no placeholder ({} or {id}): 'http://h.test/x'"


def test_another_content_type_inserts_form_values_raw() -> None:
    typed = plan_request(data="<a>{}</a>", headers=(("Content-Type", "text/xml"),))
    form = plan_request(data="a={}")
    assert typed.templates.data is not None
    assert form.templates.data is not None
    assert typed.templates.data.expand({"": "x&y"}) == "<a>x&y</a>"
    assert form.templates.data.expand({"": "x&y"}) == "a=x%26y"


def test_checks_against_the_input_format() -> None:
    """Each refusal whole, as the usage error prints it: what the input fills, and what to
    write instead (the CLI's tests see it only through a subprocess)."""
    with pytest.raises(TemplateError) as refused:
        plan_request(template="http://h.test/{owner}", input_format=InputFormat.LINES)
    assert str(refused.value) == (
        "line input only fills {} or {id}, not {owner}; "
        "for named columns use --input-format csv or jsonl"
    )
    for input_format in (InputFormat.CSV, InputFormat.JSONL):
        with pytest.raises(TemplateError) as refused:
            plan_request(template="http://h.test/{}", input_format=input_format)
        assert str(refused.value) == "with csv or jsonl input, name the column: {owner}, not {}"
    with pytest.raises(TemplateError, match="not both"):
        plan_request(data="a", json="{}")


def test_the_library_and_the_cli_send_identical_requests(server: LoopbackServer) -> None:
    url = server.url("/echo?id={}")
    body = '{"id": {id}, "name": "n {}"}'
    ids = ["1", "a&b=c", 'q"x']
    cli = run_cli("-t", url, "--json", body, "-q", "-H", "X-T: 1", stdin="\n".join(ids).encode())
    assert cli.returncode == 0, cli.stderr
    options = FetchOptions(headers=(("X-T", "1"),))

    async def through_the_library() -> list[Record]:
        return [r async for r in fetch_many(ids, options, template=url, json=body)]

    library = asyncio.run(through_the_library())

    def request(echo: dict[str, object]) -> tuple[object, ...]:
        headers = echo["headers"]
        assert isinstance(headers, dict)
        return (
            echo["method"],
            echo["raw_path"],
            json.loads(str(echo["body"])),
            headers.get("Content-Type"),
            headers.get("X-T"),
        )

    from_cli = [request(r["body"]) for r in jsonl(cli.stdout)]
    from_library = [request(r.body) for r in library]
    assert from_cli == from_library
    assert from_cli[0][0] == "POST"
    assert from_cli[1][2] == {"id": "a&b=c", "name": "n a&b=c"}


@pytest.mark.parametrize(
    "given",
    [
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded",  # a media type's case does not matter
        " application/x-www-form-urlencoded ; charset=UTF-8; q=1",  # nor its parameters
    ],
)
def test_a_form_content_type_given_by_h_still_encodes_form_values(given: str) -> None:
    """Found by mutation testing: no test gave -H a form type with a case or parameters
    of its own, so a media type read wrongly (upper-cased, cut at the last ;) passed."""
    plan = plan_request(data="a={}", headers=(("Content-Type", given),))
    assert plan.templates.data is not None
    assert plan.templates.data.expand({"": "x&y"}) == "a=x%26y"
    assert plan.content_type is None  # -H's header is sent as given
