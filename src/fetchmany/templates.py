"""Placeholders filled per item: the URL (``-t``) and request bodies (``-d``, ``--json``).

One syntax everywhere: ``{}`` or ``{id}`` is a whole input line, ``{name}`` is a
column of a CSV or JSON Lines row. Each template encodes values for where they
land, so an input can never change the structure around it: percent-encoding in
a URL, a JSON string literal in ``--json``, the raw text in ``-d``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)?\}")


class TemplateError(ValueError):
    """A template the user gave cannot be used; the message says how to fix it."""


class MissingField(KeyError):
    """An item has no value for a placeholder; the item becomes an invalid_url record."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def quote_component(value: str) -> str:
    """Percent-encode everything but unreserved characters; undecodable input bytes
    (kept as surrogates) are encoded as the original bytes."""
    return quote(value.encode("utf-8", "surrogateescape"), safe="")


def json_string(value: str) -> str:
    return json.dumps(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def raw_text(value: str) -> str:
    return value


class Template:
    """Text with placeholders, filled by ``expand`` with values encoded by ``encode``."""

    def __init__(
        self, template: str, encode: Callable[[str], str], *, what: str = "template"
    ) -> None:
        names = [m.group(1) or "" for m in _PLACEHOLDER.finditer(template)]
        self.template = template
        self.names: frozenset[str] = frozenset(names)
        self._encode = encode
        self.what = what

    def expand(self, values: Mapping[str, str]) -> str:
        """Fill every placeholder; a name missing from ``values`` raises ``MissingField``."""

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or ""
            try:
                value = values[name]
            except KeyError:
                raise MissingField(name or "{}") from None
            return self._encode(value)

        return _PLACEHOLDER.sub(substitute, self.template)


def url_template(text: str, *, fixed_ok: bool = False) -> Template:
    """A URL template; it must have a placeholder unless a body template varies instead."""
    template = Template(text, quote_component, what="--template")
    if not template.names and not fixed_ok:
        raise TemplateError(f"template has no placeholder ({{}} or {{id}}): {text!r}")
    return template


def data_template(text: str, *, as_json: bool) -> Template:
    """A request body template; ``@path`` reads it from a file. A JSON one must stay JSON."""
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as stream:
                text = stream.read()
        except OSError as exc:
            raise TemplateError(f"cannot read {text[1:]}: {exc.strerror or exc}") from None
    if not as_json:
        return Template(text, raw_text, what="--data")
    template = Template(text, json_string, what="--json")
    sample = template.expand(_Anything())
    try:
        json.loads(sample)
    except ValueError:
        raise TemplateError(
            "--json must be JSON once placeholders are filled; write them without quotes, "
            'as in {"id": {id}} (each becomes a JSON string)'
        ) from None
    return template


class _Anything(dict[str, str]):
    """Values for a trial expansion: every name has one."""

    def __missing__(self, key: str) -> str:
        return "x"


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """Everything per item that templates produce: the URL and, optionally, the body."""

    url: Template | None = None
    data: Template | None = None

    @property
    def names(self) -> frozenset[str]:
        names: frozenset[str] = frozenset()
        for template in (self.url, self.data):
            if template is not None:
                names |= template.names
        return names
