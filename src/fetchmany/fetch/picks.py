"""``--pick NAME=PATH``: pull one value out of a JSON body into a top-level field.

The path syntax is deliberately tiny (dot-separated keys and list indexes, as in
``data.items.2.id``) so it needs no quoting in a shell; for anything richer,
pipe the records to jq. A path that does not lead anywhere gives null.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fetchmany.checks import several, shown
from fetchmany.fields import ERROR_MESSAGE_COLUMN, FIELDS, OPTIONAL_FIELDS, SAVED_FIELDS

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Pick:
    name: str
    path: tuple[str, ...]

    def extract(self, value: Any) -> Any:
        """Follow the path through dicts (by key) and lists (by index); None if it breaks."""
        for step in self.path:
            if isinstance(value, dict):
                if step not in value:
                    return None
                value = value[step]
            elif isinstance(value, list) and _is_index(step):
                index = int(step)
                if not -len(value) <= index < len(value):
                    return None
                value = value[index]
            else:
                return None
        return value


def _is_index(step: str) -> bool:
    return step.isdigit() or (step.startswith("-") and step[1:].isdigit())


def parse_pick(text: str) -> Pick:
    """``title=0.title`` → Pick("title", ("0", "title")). Raises ValueError when malformed."""
    name, sep, path = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise ValueError(f"expected NAME=PATH with NAME a plain word, got {text!r}")
    steps = tuple(step for step in path.strip().split(".")) if path.strip() else ()
    if any(step == "" for step in steps):
        raise ValueError(f"empty step in path {path!r} (use keys and indexes: 0.title)")
    return Pick(name, steps)


_TAKEN = frozenset({*FIELDS, *SAVED_FIELDS, *OPTIONAL_FIELDS, ERROR_MESSAGE_COLUMN})


def checked_picks(value: object) -> tuple[Pick, ...]:
    """The picks of a run: ``Pick`` objects, ``"NAME=PATH"`` texts, or a mapping of
    NAME to PATH (or such pairs). A name of a record's own field, or a name twice, is refused: one
    value would hide the other."""
    picks = []
    for one in several(value, "NAME=PATH texts, Picks or a mapping of NAME to PATH"):
        if isinstance(one, tuple) and len(one) == 2 and all(isinstance(x, str) for x in one):
            one = f"{one[0]}={one[1]}"  # a mapping's (NAME, PATH)
        if (
            isinstance(one, Pick)
            and isinstance(one.name, str)
            and _NAME.match(one.name)
            and isinstance(one.path, tuple)
            and all(isinstance(step, str) for step in one.path)
        ):
            picks.append(one)
        elif isinstance(one, str):
            picks.append(parse_pick(one))
        else:
            raise TypeError(f"each pick is NAME=PATH text or a Pick of text, got {shown(one)}")
    names = [pick.name for pick in picks]
    if reserved := sorted(set(names) & _TAKEN):
        raise ValueError(f"{reserved[0]!r} is a field of every record; give the pick another name")
    if duplicated := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"field name used twice: {duplicated[0]!r}")
    return tuple(picks)


def apply_picks(picks: Sequence[Pick], body: Any) -> dict[str, Any]:
    return {pick.name: pick.extract(body) for pick in picks}
