"""Strict JSON text: what is not JSON a record can hold is a ValueError, never a crash."""

from __future__ import annotations

import pytest

from fetchmany import jsontext


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "NaN is not a JSON value"),
        ('{"a": [Infinity]}', "Infinity is not a JSON value"),
        ("-Infinity", "-Infinity is not a JSON value"),
        ("[1e999]", "number 1e999 is beyond what a double holds"),
        ("[" * 100_000, "nested too deeply to parse"),
    ],
)
def test_what_a_record_cannot_hold_is_a_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jsontext.loads(text)


def test_deep_nesting_is_told_apart_from_other_refusals() -> None:
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads("[" * 100_000)


def test_numbers_come_back_as_written_when_text_is_wanted() -> None:
    value = jsontext.loads('{"a": 1e2, "b": -0, "c": 1.50, "d": 7}', numbers_as_text=True)
    assert value == {"a": "1e2", "b": "-0", "c": "1.50", "d": "7"}
    assert all(isinstance(v, jsontext.NumberText) for v in value.values())
    assert jsontext.loads('{"a": 1e2}') == {"a": 100.0}
    with pytest.raises(ValueError, match="beyond what a double holds"):
        jsontext.loads("[1e999]", numbers_as_text=True)


@pytest.mark.parametrize(
    "text",
    [
        b'{"id":123456789012345678901234567890,"ok":true}',  # beyond 64 bits: orjson rounds
        b'{"body":[1,{"n":-9223372036854775809}]}',
        b'{"n":18446744073709551616}',
        b"18446744073709551616",
        b'{"n":18446744073709551615,"f":1e20,"g":-0.0,"h":0.1}',
        b'{"s":"\\ud800"}',  # a lone surrogate: orjson refuses, the stdlib keeps it
        b'{"a":1,"b":2,"a":3}\n',  # a key twice: the last value, at the first place
    ],
)
def test_a_record_read_fast_is_the_value_the_strict_parser_gives(text: bytes) -> None:
    fast = jsontext.loads_record(text)
    assert fast == jsontext.loads(text)
    assert repr(fast) == repr(jsontext.loads(text))  # types too: an int stays an int


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"a":NaN}', "NaN is not a JSON value"),
        (b"[1e999]", "beyond what a double holds"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a":1', "Expecting"),  # cut short
        (b'{"a":"\xff"}', "can't decode byte 0xff"),  # not UTF-8
    ],
)
def test_a_record_read_fast_is_refused_as_the_strict_parser_refuses(
    text: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as strict:
        jsontext.loads(text)
    with pytest.raises(ValueError, match=message) as fast:
        jsontext.loads_record(text)
    assert str(fast.value) == str(strict.value)  # the same words, whichever reader


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'\xef\xbb\xbf{"a":1}', "Unexpected UTF-8 BOM"),
        ('{"a":1}'.encode("utf-16"), "can't decode byte 0xff"),
        ('{"a":1}'.encode("utf-32"), "can't decode byte 0xff"),
    ],
)
def test_a_record_line_is_read_as_utf8_alone(text: bytes, message: str) -> None:
    """json.loads of bytes takes a byte-order mark, UTF-16 or UTF-32 too; fetchmany
    writes UTF-8 with none, so a line otherwise was not written by it."""
    with pytest.raises(ValueError, match=message):
        jsontext.loads_record(text)
