"""--pick NAME=PATH: keys and indexes into a JSON body; a path that breaks gives null."""

from __future__ import annotations

import re

import pytest

from fetchmany.fetch.picks import Pick, apply_picks, parse_pick

BODY = {
    "data": {"items": [{"id": 1}, {"id": 2}, {"id": 3}]},
    "0": "zero",
    "n": None,
    "a=b": "eq",
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.items.2.id", 3),
        ("data.items.-1.id", 3),
        ("data.items.-3.id", 1),  # counted from the end, as far as the first
        ("data.items.-4.id", None),
        ("data.items.3.id", None),
        ("data.items.-x", None),  # neither is an index: null, never a crash
        ("data.items.a1", None),
        ("a=b", "eq"),  # NAME ends at the first "=": a key may hold one
        ("data.items.x", None),
        ("0", "zero"),  # a key that looks like an index, in an object
        ("n", None),
        ("data.items.0.id.deeper", None),
        ("", BODY),
    ],
)
def test_paths(path: str, value: object) -> None:
    assert parse_pick(f"v={path}").extract(BODY) == value


def test_picks_from_a_body_that_is_not_json_are_null() -> None:
    assert apply_picks([Pick("a", ("x",)), Pick("b", ())], "plain text") == {
        "a": None,
        "b": "plain text",
    }


@pytest.mark.parametrize("text", ["noequals", "1st=a", "a b=c", "=x", "a=b..c"])
def test_malformed_picks(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected NAME=PATH|empty step"):
        parse_pick(text)


@pytest.mark.parametrize(
    ("picks", "said"),
    [
        (["v=id", "v=path"], "field name used twice: 'v'"),
        (["a=x", "b=y", "a=z", "b=w"], "field name used twice: 'a'"),  # the first in order
        ({"v": "id", "w": "id"}, None),  # one path twice, under two names: both kept
        (["status=a"], "'status' is a field of every record; give the pick another name"),
    ],
)
def test_a_name_that_would_hide_another_value_is_refused(picks: object, said: str | None) -> None:
    """--pick v=id --pick v=path: one value would silently hide the other; the same for a
    name every record already has."""
    from fetchmany.fetch.picks import checked_picks

    if said is None:
        assert [pick.name for pick in checked_picks(picks)] == ["v", "w"]
        return
    with pytest.raises(ValueError, match="^" + re.escape(said) + "$"):
        checked_picks(picks)
