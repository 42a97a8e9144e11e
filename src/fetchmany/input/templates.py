"""Placeholders filled per item: the URL (``-t``), request bodies (``-d``, ``--json``), file names.

One syntax everywhere: ``{}`` or ``{id}`` is a whole input line, ``{name}`` is a
column of a CSV or JSON Lines row, and ``{{``/``}}`` are literal braces. Each
template encodes values for where they land, so an input can never change the
structure around it:

- a URL: each value percent-encoded as one component;
- a form body (``-d`` sent as ``application/x-www-form-urlencoded``): each value
  form-encoded, so ``a&admin=1`` stays one value; raw text only when ``-H`` sets
  another content type;
- ``--json``: a placeholder inside a JSON string is escaped for that string
  (``{"name": "{}"}``); one outside a string becomes a JSON string
  (``{"id": {id}}``); and ``{}`` outside a string is JSON's empty object, not a
  placeholder.

Templates are compiled once into literal and placeholder parts, so filling one per
item is a join, not a regular-expression pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NoReturn
from urllib.parse import quote, quote_plus

_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)?\}")
_NAMED: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IN_STRING: Final = re.compile(r'\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)?\}|\\.|"', re.DOTALL)
_OUTSIDE: Final = re.compile(r'\{([A-Za-z_][A-Za-z0-9_]*)\}|"')

Encoder = Callable[[str], str]


class TemplateError(ValueError):
    """A template the user gave cannot be used; the message says how to fix it."""


class MissingField(KeyError):
    """An item has no value for a placeholder; the item becomes an invalid_url record."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class LoneSurrogate(ValueError):
    """Text holding a UTF-16 surrogate that stands for no byte (``"\\ud800"`` in JSON),
    which no encoding can send."""

    def __init__(self, char: str) -> None:
        super().__init__(f"text holds a lone surrogate (U+{ord(char):04X}), which cannot be sent")


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of ``text``, undecodable input bytes (``surrogateescape``) restored.

    Raises ``LoneSurrogate`` for any other surrogate rather than ``UnicodeEncodeError``
    from somewhere deep in a request.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise LoneSurrogate(text[exc.start]) from None


def quote_component(value: str) -> str:
    """Percent-encode everything but unreserved characters."""
    return quote(encode_text(value), safe="")


def form_value(value: str) -> str:
    """Encode as an ``application/x-www-form-urlencoded`` value (space as ``+``)."""
    return quote_plus(encode_text(value), safe="")


def _valid(value: str) -> str:
    return encode_text(value).decode("utf-8", "replace")


def json_string(value: str) -> str:
    """The value as a whole JSON string literal, quotes included."""
    return json.dumps(_valid(value), ensure_ascii=False)


def json_string_content(value: str) -> str:
    """The value escaped to sit inside a JSON string literal the template already opened."""
    return json_string(value)[1:-1]


def raw_text(value: str) -> str:
    return value


Part = str | tuple[str, Encoder]
"""A literal, or a placeholder: (name, encoder); the name ``""`` is ``{}``."""


class Template:
    """Text with placeholders, compiled once; ``expand`` fills them for one item."""

    def __init__(self, template: str, parts: list[Part]) -> None:
        self.template = template
        self._parts = _merge(parts)
        self.names: frozenset[str] = frozenset(p[0] for p in self._parts if isinstance(p, tuple))

    @classmethod
    def plain(cls, template: str, encode: Encoder) -> Template:
        """``{}``/``{name}`` placeholders encoded by ``encode``; ``{{``/``}}`` literal braces."""
        parts: list[Part] = []
        at = 0
        for match in _TOKEN.finditer(template):
            parts.append(template[at : match.start()])
            token = match.group()
            if token in ("{{", "}}"):
                parts.append(token[0])
            else:
                parts.append((match.group(1) or "", encode))
            at = match.end()
        parts.append(template[at:])
        return cls(template, parts)

    def expand(self, values: Mapping[str, str]) -> str:
        """Fill every placeholder; a name missing from ``values`` raises ``MissingField``."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, encode = part
            try:
                value = values[name]
            except KeyError:
                raise MissingField(name or "{}") from None
            out.append(encode(value))
        return "".join(out)


def _merge(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str):
            if not part:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] += part
                continue
        merged.append(part)
    return merged


def json_template(text: str) -> Template:
    """Compile ``--json``: placeholders are encoded for where they sit in the JSON text.

    Outside strings only ``{name}`` is a placeholder (so ``{}`` and nested objects stay
    JSON); inside a string ``{}``, ``{name}``, ``{{`` and ``}}`` work as everywhere.
    """
    parts: list[Part] = []
    at = 0
    inside = False
    while True:
        pattern = _IN_STRING if inside else _OUTSIDE
        match = pattern.search(text, at)
        if match is None:
            parts.append(text[at:])
            break
        token = match.group()
        parts.append(text[at : match.start()])
        if token == '"':
            parts.append(token)
            inside = not inside
        elif token in ("{{", "}}"):
            parts.append(token[0])
        elif token.startswith("\\"):
            parts.append(token)  # an escape, \" included: the string goes on
        else:
            encode = json_string_content if inside else json_string
            parts.append((match.group(1) or "", encode))
        at = match.end()
    return Template(text, parts)


_SCHEMES: Final = ("http://", "https://")


def url_template(text: str) -> Template:
    """``--template``: a URL with placeholders. Refused (``TemplateError``) before any
    request, rather than giving every item an ``invalid_url`` record: braces that do
    not balance, and a start that is not ``http://`` or ``https://`` (unless a
    placeholder comes first and may bring it)."""
    _check_braces(text)
    start = _TOKEN.search(text)
    head = text[: start.start()] if start else text
    lowered = head.lower()
    if head and not any(lowered.startswith(s) or s.startswith(lowered) for s in _SCHEMES):
        hint = "" if "://" in head else f" (did you mean {'http://' + text!r}?)"
        raise TemplateError(f"--template must start with http:// or https://: {text!r}{hint}")
    return Template.plain(text, quote_component)


def _check_braces(text: str) -> None:
    """Braces outside placeholders must pair up (``{x-y}`` is kept as text, as ever); a
    ``{`` never closed or a ``}`` that closes nothing is a typo for a placeholder."""
    opened: list[int] = []
    at = 0
    for match in [*_TOKEN.finditer(text), None]:
        end = match.start() if match else len(text)
        for where in range(at, end):
            if text[where] == "{":
                opened.append(where)
            elif text[where] == "}" and not opened:
                _unbalanced(text, f"the }} at character {where + 1} closes nothing")
            elif text[where] == "}":
                opened.pop()
        if match:
            at = match.end()
    if opened:
        _unbalanced(text, f"the {{ at character {opened[-1] + 1} is never closed")


def _unbalanced(text: str, what: str) -> NoReturn:
    raise TemplateError(
        f"--template: {what}; a placeholder is {{}} or {{name}}, a literal brace {{{{ or "
        f"}}}}: {text!r}"
    )


def read_template(text: str) -> str:
    """A body template as given, or read from a file for ``@path``."""
    if not text.startswith("@"):
        return text
    try:
        with open(text[1:], encoding="utf-8-sig") as stream:  # an editor's BOM is not body
            return stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TemplateError(f"cannot read {text[1:]}: {reason or exc}") from None


def body_template(text: str, *, as_json: bool, form: bool) -> Template:
    """A request body template (``@path`` reads it from a file); a JSON one must stay JSON.

    ``form``: values are form-encoded, for an ``application/x-www-form-urlencoded`` body.
    """
    text = read_template(text)
    if not as_json:
        return Template.plain(text, form_value if form else raw_text)
    template = json_template(text)
    try:
        json.loads(template.expand(_Anything()))
    except ValueError:
        raise TemplateError(
            "--json must be JSON once placeholders are filled: write {id} for a JSON "
            'string, or "{id}" inside one, as in {"id": {id}, "name": "item {}"}'
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
