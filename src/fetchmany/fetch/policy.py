"""Request policy: the one place that decides what every item's request looks like.

The CLI and the library (``fetch_many``) both call ``plan_request``, so the same
templates and options always give the same requests: the method (POST when a body
is given, unless one is named), the body's content type (form or JSON, unless a
``-H Content-Type`` sets one, which also decides how values are encoded into the
body), and whether the templates can be filled by the input at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from fetchmany.input.rows import InputFormat
from fetchmany.input.templates import (
    RequestTemplate,
    Template,
    TemplateError,
    body_template,
    raw_text,
    url_template,
)
from fetchmany.options import DEFAULT_METHOD

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE: Final = "application/json"
BODY_METHOD: Final = "POST"


def header_value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The last value given for header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    found = None
    for key, value in headers:
        if key.lower() == wanted:
            found = value
    return found


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What every item's request shares."""

    templates: RequestTemplate
    method: str
    content_type: str | None
    """The Content-Type header to add to requests with a body; None when there is no
    body or ``-H`` sets it (then that header is sent as given)."""
    accept: str | None = None
    """The Accept header to send: JSON for a ``--json`` body, as curl's ``--json`` and
    httpie ask; None for aiohttp's ``*/*``, or when ``-H`` sets Accept."""


def plan_request(
    *,
    template: str | None = None,
    data: str | None = None,
    json: str | None = None,
    method: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    input_format: InputFormat | None = None,
) -> RequestPlan:
    """Check the templates against each other and the input, and settle method and
    content type. ``input_format`` None (the library, whose items may mix strings and
    mappings) skips the check of which placeholders the input can fill.

    Raises ``TemplateError`` with a message for the user.
    """
    if data is not None and json is not None:
        raise TemplateError("give a body as --data or --json, not both")
    given_type = header_value(headers, "Content-Type")
    body: Template | None = None
    content_type: str | None = None
    if json is not None:
        body = body_template(json, as_json=True, form=False)
        content_type = JSON_CONTENT_TYPE
    elif data is not None:
        form = given_type is None or media_type(given_type) == FORM_CONTENT_TYPE
        body = body_template(data, as_json=False, form=form)
        content_type = FORM_CONTENT_TYPE
    url = url_template(template) if template is not None else None
    if url is not None and not url.names and not (body is not None and body.names):
        hint = ""
        if json is not None and "{}" in json:
            hint = ' (in --json, {} outside a string is an empty object: write {id} or "{}")'
        raise TemplateError(f"template has no placeholder ({{}} or {{id}}): {template!r}{hint}")
    templates = RequestTemplate(url, body)
    if input_format is not None:
        _check_fillable(templates, input_format)
    return RequestPlan(
        templates,
        method=method or (BODY_METHOD if body is not None else DEFAULT_METHOD),
        content_type=content_type if given_type is None else None,
        accept=JSON_CONTENT_TYPE
        if json is not None and header_value(headers, "Accept") is None
        else None,
    )


def _check_fillable(templates: RequestTemplate, input_format: InputFormat) -> None:
    names = templates.names
    if input_format is InputFormat.LINES:
        if unknown := names - {"", "id"}:
            raise TemplateError(
                f"line input only fills {{}} or {{id}}, not {{{sorted(unknown)[0]}}}; "
                "for named columns use --input-format csv or jsonl"
            )
    elif "" in names:
        raise TemplateError("with csv or jsonl input, name the column: {owner}, not {}")


_SAVE_NAMES: Final = frozenset({"index", "ext"})
"""What --save-name fills for every item, besides the input's own placeholders."""


def check_save_name(template: str, input_format: InputFormat) -> None:
    """A --save-name placeholder that line input can never fill is a mistake to say, not
    a name silently replaced by the item's index for every file."""
    names = Template.plain(template, raw_text).names - _SAVE_NAMES
    if input_format is InputFormat.LINES and (unknown := names - {"", "id"}):
        raise TemplateError(
            f"--save-name: line input only fills {{}}, {{id}}, {{index}} or {{ext}}, not "
            f"{{{sorted(unknown)[0]}}}; for named columns use --input-format csv or jsonl"
        )
