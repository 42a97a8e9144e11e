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


def apply_picks(picks: Sequence[Pick], body: Any) -> dict[str, Any]:
    return {pick.name: pick.extract(body) for pick in picks}
