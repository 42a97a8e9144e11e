"""Placeholders: encoded for where they land, so an input never changes the structure."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from fetchmany.input.templates import (
    MissingField,
    Template,
    TemplateError,
    body_template,
    quote_component,
    raw_text,
    url_template,
)


def test_double_braces_are_literal_braces_everywhere() -> None:
    assert url_template("http://h.test/{{x}}/{}").expand({"": "7"}) == "http://h.test/{x}/7"
    assert Template.plain("{{{}}}", raw_text).expand({"": "v"}) == "{v}"
    assert body_template("a={{}}&b={}", as_json=False, form=True).expand({"": "1"}) == "a={}&b=1"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("http://h.test/{id", "the { at character 15 is never closed"),
        ("}{}", "the } at character 1 closes nothing"),  # the first character too
        ("{x{}", "the { at character 1 is never closed"),
        ("http://h.test/}{}", "the } at character 15 closes nothing"),
        ("http://h.test/{}?a={", "the { at character 20 is never closed"),
        ("h.test/{}", "must start with http:// or https://"),
        ("127.0.0.1:8080/posts/{}", "did you mean 'http://127.0.0.1:8080/posts/{}'"),
        ("file:///{}", "must start with http:// or https://"),
    ],
)
def test_a_url_template_that_cannot_work_is_refused(template: str, says: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(says)):
        url_template(template)


@pytest.mark.parametrize(
    "template", ["HTTPS://h.test/{}", "{}", "{scheme}://h.test/{id}", "ht{x}", "http://h/{}#{x-y}"]
)
def test_a_url_template_may_start_with_what_brings_its_scheme(template: str) -> None:
    assert url_template(template).names


def test_a_lone_brace_is_kept_as_text() -> None:
    assert Template.plain("a{b}c{", raw_text).expand({"b": "X"}) == "aXc{"
    assert Template.plain("x}y", raw_text).expand({}) == "x}y"


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ('{"id": {id}}', '7"x', {"id": '7"x'}),
        ('{"name": "{}"}', 'say "hi" \\', {"name": 'say "hi" \\'}),
        ('{"name": "item {} of {id}"}', "3", {"name": "item 3 of 3"}),
        ('{"id": {id}, "opts": {}}', "9", {"id": "9", "opts": {}}),
        ('{"lit": "{{}}", "esc": "a\\"{}\\""}', "v", {"lit": "{}", "esc": 'a"v"'}),
        ('{"nested": {"a": {"b": {id}}}}', "z", {"nested": {"a": {"b": "z"}}}),
        ('[{id}, "{}", {}]', "q", ["q", "q", {}]),
    ],
)
def test_json_placeholders_are_encoded_for_where_they_stand(
    template: str, value: str, expected: object
) -> None:
    compiled = body_template(template, as_json=True, form=False)
    assert json.loads(compiled.expand({"": value, "id": value})) == expected


def test_json_values_cannot_break_out_of_their_string() -> None:
    compiled = body_template('{"q": "{}", "admin": false}', as_json=True, form=False)
    hostile = '", "admin": true, "x": "'
    assert json.loads(compiled.expand({"": hostile})) == {"q": hostile, "admin": False}


def test_a_json_template_must_stay_json() -> None:
    with pytest.raises(TemplateError) as refused:
        body_template('{"id": {id}', as_json=True, form=False)
    assert str(refused.value) == (  # whole: the way out is in the message
        "--json must be JSON once placeholders are filled: write {id} for a JSON "
        'string, or "{id}" inside one, as in {"id": {id}, "name": "item {}"}'
    )
    with pytest.raises(TemplateError, match="--json must be JSON"):
        body_template("{id} {id}", as_json=True, form=False)


def test_form_values_are_encoded_so_an_input_is_one_value() -> None:
    compiled = body_template("q={}&page=2", as_json=False, form=True)
    body = compiled.expand({"": "a&admin=1 +é"})
    assert body == "q=a%26admin%3D1+%2B%C3%A9&page=2"
    assert parse_qs(body) == {"q": ["a&admin=1 +é"], "page": ["2"]}


def test_raw_bodies_insert_values_as_given() -> None:
    compiled = body_template("<q>{}</q>", as_json=False, form=False)
    assert compiled.expand({"": "a&b=1"}) == "<q>a&b=1</q>"


def test_a_missing_field_names_the_placeholder() -> None:
    with pytest.raises(MissingField) as caught:
        url_template("http://h.test/{owner}/{name}").expand({"owner": "a"})
    assert caught.value.name == "name"


def test_url_values_are_one_component() -> None:
    assert quote_component("a/b?c#d e") == "a%2Fb%3Fc%23d%20e"
    assert quote_component("\udcff") == "%FF"  # an undecodable input byte, as it was


def test_a_body_template_file_that_is_missing_or_not_text(tmp_path: Path) -> None:
    """Each refusal says why (mutation testing found the reasons unasserted)."""
    with pytest.raises(TemplateError, match=r"cannot read /no/such: No such file or directory$"):
        body_template("@/no/such", as_json=True, form=False)
    latin = tmp_path / "body.txt"
    latin.write_bytes(b"caf\xe9={}")
    with pytest.raises(TemplateError, match=r"cannot read .*body\.txt: not UTF-8 text$"):
        body_template(f"@{latin}", as_json=False, form=True)


def test_a_json_value_beyond_ascii_is_sent_as_utf_8_not_escaped() -> None:
    """Found by mutation testing: ``\\u00e9`` is the same JSON value, but the body is
    the text the user's values hold, as curl --json sends it."""
    compiled = body_template('{"name": {id}, "q": "x {}"}', as_json=True, form=False)
    assert compiled.expand({"": "é", "id": "日本"}) == '{"name": "日本", "q": "x é"}'


@pytest.mark.parametrize("as_json", [False, True])
def test_a_body_file_saved_with_a_bom_is_sent_without_it(tmp_path: Path, as_json: bool) -> None:
    """-d @file: a byte-order mark an editor put first is not body (a JSON parser refuses
    a body that starts with one); the rest goes as written."""
    body = tmp_path / "body"
    text = '{"name": "{}"}' if as_json else "name={}"
    body.write_bytes(b"\xef\xbb\xbf" + text.encode())
    template = body_template(f"@{body}", as_json=as_json, form=False)
    expected = '{"name": "x"}' if as_json else "name=x"
    assert template.expand({"": "x"}) == expected
