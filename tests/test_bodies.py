"""Body decoding: what ends up in a record's ``body`` for each content type and mode."""

from __future__ import annotations

import base64
import json

import pytest

from fetchmany.fetch.bodies import decode_body
from fetchmany.records import BodyMode, ErrorKind, FetchError


def test_auto_parses_json_types() -> None:
    assert decode_body(b'{"a": [1, 2]}', "application/json", BodyMode.AUTO).value == {"a": [1, 2]}
    assert decode_body(b"[1]", "application/vnd.api+json", BodyMode.AUTO).value == [1]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"[123456789012345678901234567890]", [123456789012345678901234567890]),
        # The body's very first bytes: the guard finds a run at offset 0 too.
        (b"123456789012345678901234567890", 123456789012345678901234567890),
        (b"-18446744073709551617", -18446744073709551617),
    ],
)
def test_auto_keeps_integers_beyond_64_bits(raw: bytes, value: object) -> None:
    decoded = decode_body(raw, "application/json", BodyMode.AUTO)
    assert decoded == (value, None)
    assert type(decoded.value) is type(value)  # an int, not orjson's rounded float


def test_auto_decodes_text_with_the_response_charset() -> None:
    raw = "café".encode("iso-8859-1")
    assert decode_body(raw, "text/plain; charset=ISO-8859-1", BodyMode.AUTO).value == "café"
    assert decode_body("café".encode(), "text/html", BodyMode.AUTO).value == "café"


def test_unknown_charset_falls_back_without_failing() -> None:
    assert (
        decode_body(b"abc\xff", "text/plain; charset=x-nonsense", BodyMode.AUTO).value
        == "abc\ufffd"
    )


def test_auto_base64_encodes_binary() -> None:
    raw = bytes(range(256))
    value = decode_body(raw, "image/png", BodyMode.AUTO).value
    assert base64.b64decode(value) == raw


def test_json_that_does_not_parse_keeps_the_text_and_says_so() -> None:
    decoded = decode_body(b"{oops", "application/json", BodyMode.AUTO)
    assert decoded.value == "{oops"
    assert decoded.error is not None
    assert decoded.error.kind is ErrorKind.INVALID_JSON


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (BodyMode.TEXT, '{"a":1}'),
        (BodyMode.JSON, {"a": 1}),
        (BodyMode.BASE64, base64.b64encode(b'{"a":1}').decode()),
        (BodyMode.NONE, None),
    ],
)
def test_explicit_modes_override_the_content_type(mode: BodyMode, expected: object) -> None:
    assert decode_body(b'{"a":1}', "application/octet-stream", mode).value == expected


@pytest.mark.parametrize(
    "charset",
    ["base64", "rot13", "zlib", "hex", "uu", "quopri", "bz2", "idna", "undefined",
     "unicode_escape", "x-nonsense", "caf\udce9", "a\x00b", ""],
)  # fmt: skip
@pytest.mark.parametrize("mode", [BodyMode.AUTO, BodyMode.TEXT])
def test_a_charset_that_cannot_decode_text_is_a_note_not_a_crash(
    charset: str, mode: BodyMode
) -> None:
    decoded = decode_body(b"caf\xc3\xa9 \xff", f"text/plain; charset={charset}", mode)
    assert decoded.value == "café \ufffd"  # UTF-8, with replacement
    if charset:
        assert decoded.error is not None
        assert decoded.error.kind is ErrorKind.INVALID_CHARSET
        assert "UTF-8" in decoded.error.message
        assert decoded.error.message.encode()  # valid text, even for a name with bad bytes


def test_usable_charsets_decode_without_a_note() -> None:
    for charset, raw in (("utf8mb4", "é".encode()), ("latin1", b"\xe9"), ("UTF-8", b"\xc3\xa9")):
        decoded = decode_body(raw, f"text/plain; charset={charset}", BodyMode.TEXT)
        assert (decoded.value, decoded.error) == ("é", None)


def test_json_with_a_bad_charset_still_parses_or_keeps_its_text() -> None:
    assert decode_body(b'{"a": 1}', "application/json; charset=base64", BodyMode.AUTO).value == {
        "a": 1
    }
    broken = decode_body(b"{nope", "application/json; charset=rot13", BodyMode.AUTO)
    assert broken.value == "{nope"
    assert broken.error is not None
    assert broken.error.kind is ErrorKind.INVALID_JSON


def test_json_nested_deeper_than_can_be_written_is_kept_as_text() -> None:
    deep = b"[" * 3000 + b"]" * 3000
    decoded = decode_body(deep, "application/json", BodyMode.AUTO)
    assert decoded.error is not None
    assert decoded.error.kind is ErrorKind.INVALID_JSON
    assert "nested deeper" in decoded.error.message
    assert decoded.value == deep.decode()
    fits = b"[" * 200 + b"]" * 200
    assert decode_body(fits, "application/json", BodyMode.AUTO).error is None


@pytest.mark.parametrize("raw", [b"[NaN]", b'{"a": Infinity}', b"-Infinity"])
def test_nan_and_infinity_are_not_json(raw: bytes) -> None:
    decoded = decode_body(raw, "application/json", BodyMode.AUTO)
    assert decoded.value == raw.decode()
    assert decoded.error is not None
    assert decoded.error.kind is ErrorKind.INVALID_JSON


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        ('{"a": "café"}'.encode("latin-1"), "application/json; charset=ISO-8859-1"),
        ('{"a": "café"}'.encode("utf-16"), "application/json; charset=utf-16"),
        ('{"a": "café"}'.encode("utf-16-le"), "application/json"),
        ('\ufeff{"a": "café"}'.encode(), "application/json"),
        ('{"a": "café"}'.encode(), "application/json; charset=utf-8"),
    ],
)
def test_json_in_any_labelled_or_detectable_encoding_parses(raw: bytes, content_type: str) -> None:
    decoded = decode_body(raw, content_type, BodyMode.AUTO)
    assert (decoded.value, decoded.error) == ({"a": "café"}, None)


@pytest.mark.parametrize("raw", [b'{"a": 1e999}', b"[-1e400, 12345678901234567890]"])
def test_a_number_beyond_a_double_is_not_json_we_can_keep(raw: bytes) -> None:
    decoded = decode_body(raw, "application/json", BodyMode.AUTO)
    assert decoded.error is not None
    assert decoded.error.kind is ErrorKind.INVALID_JSON


@pytest.mark.parametrize(
    ("raw", "charset", "value"),
    [
        # A BOM is not part of the JSON text (RFC 8259 8.1); utf-16le does not drop it.
        ('\ufeff{"a":"é"}'.encode("utf-16-le"), "utf-16le", {"a": "é"}),
        # One bad byte spoils one character, not the whole body's decoding.
        ('{"a":"日本'.encode("shift_jis") + b"\x80" + b'"}', "shift_jis", {"a": "日本\ufffd"}),
    ],
)
def test_json_in_a_labelled_charset_is_decoded_by_its_label(
    raw: bytes, charset: str, value: object
) -> None:
    decoded = decode_body(raw, f"application/json; charset={charset}", BodyMode.AUTO)
    assert decoded == (value, None)


def _nested(levels: int) -> bytes:
    """JSON ``levels`` deep, objects and arrays in turn, with an empty one before the
    deeper one in each level (so more brackets than levels, and the deepest path is not
    the last one walked)."""
    text = "[]"
    for level in range(levels - 1):
        text = f'{{"e": {{}}, "k": {text}}}' if level % 2 else f"[[], {text}]"
    return text.encode()


@pytest.mark.parametrize(("levels", "fits"), [(254, True), (255, False), (600, False)])
def test_json_is_kept_up_to_the_depth_a_record_can_hold(levels: int, fits: bool) -> None:
    """Deep enough to parse (orjson goes to 1024) but deeper than a record can be written
    back at: told by counting the levels, at the exact limit."""
    decoded = decode_body(_nested(levels), "application/json", BodyMode.AUTO)
    if fits:
        assert decoded.error is None
        assert decoded.value == json.loads(_nested(levels))
    else:
        assert decoded.error == FetchError(
            ErrorKind.INVALID_JSON, "body is not JSON: nested deeper than 254 levels"
        )
        assert decoded.value == _nested(levels).decode()


@pytest.mark.parametrize(
    ("raw", "content_type", "value"),
    [
        (b'{"a": 1}', "text/json", {"a": 1}),  # JSON by an older name
        (b'{"a": 1}', "application/problem+json", {"a": 1}),
        (b"<a>\xc3\xa9</a>", "application/atom+xml", "<a>é</a>"),  # text by its suffix
        (b"a: \xc3\xa9", "application/vnd.k8s+yaml", "a: é"),
        (b"var a = 1", "application/javascript", "var a = 1"),  # a textual application type
        (b"caf\xe9", "text/plain; charset=utf-8", "caf\ufffd"),  # one bad byte: one U+FFFD
        (b"caf\x8f", "text/plain; charset=shift_jis", "caf\ufffd"),
        (b'{"a": "caf\xe9"}', "application/json", {"a": "caf\ufffd"}),  # not UTF-8 in JSON
        (b"plain \xc3\xa9", None, "plain é"),  # no type: text when valid UTF-8 ...
        (b"not\x00text", None, base64.b64encode(b"not\x00text").decode()),  # ... with no NUL
        (b"caf\xe9", None, base64.b64encode(b"caf\xe9").decode()),
    ],
)
def test_what_each_type_of_body_becomes(
    raw: bytes, content_type: str | None, value: object
) -> None:
    assert decode_body(raw, content_type, BodyMode.AUTO) == (value, None)


def test_the_depth_is_counted_past_a_value_that_is_no_container() -> None:
    """A deep branch beside a plain value at the top level (the value is looked at first,
    and the count goes on past it)."""
    deep = b"[" + b"[" * 254 + b"]" * 254 + b', 1, "x"]'  # 255 levels
    decoded = decode_body(deep, "application/json", BodyMode.AUTO)
    assert decoded.error == FetchError(
        ErrorKind.INVALID_JSON, "body is not JSON: nested deeper than 254 levels"
    )


@pytest.mark.parametrize(("at", "textual"), [(4095, False), (4096, True)])
def test_a_body_with_no_type_is_binary_by_a_nul_in_its_first_4096_bytes(
    at: int, textual: bool
) -> None:
    """Sniffed as text (valid UTF-8) unless a NUL shows in the first 4096 bytes."""
    raw = b"a" * at + b"\x00" + b"b" * 10
    value, error = decode_body(raw, None, BodyMode.AUTO)
    assert error is None
    assert value == (raw.decode() if textual else base64.b64encode(raw).decode())


@pytest.mark.parametrize("levels", [254, 255])
def test_objects_alone_are_counted_at_the_depth_limit(levels: int) -> None:
    """Objects in objects, no array anywhere: the braces count toward the limit too."""
    deep = b'{"a": ' * levels + b"1" + b"}" * levels
    decoded = decode_body(deep, "application/json", BodyMode.AUTO)
    too_deep = FetchError(ErrorKind.INVALID_JSON, "body is not JSON: nested deeper than 254 levels")
    assert decoded.error == (too_deep if levels > 254 else None)


def test_json_that_does_not_parse_is_shown_as_text_in_its_own_charset() -> None:
    """The record keeps what came, readable: decoded by the charset the server named."""
    value, error = decode_body(
        b'{"a": "caf\xe9"', "application/json; charset=iso-8859-1", BodyMode.AUTO
    )
    assert value == '{"a": "café"'
    assert error is not None
    assert error.kind is ErrorKind.INVALID_JSON


def test_brackets_alone_are_counted_at_the_depth_limit_too() -> None:
    deep = b"[" * 255 + b"]" * 255  # 510 bytes: the shortest JSON 255 deep
    decoded = decode_body(deep, "application/json", BodyMode.AUTO)
    assert decoded.error == FetchError(
        ErrorKind.INVALID_JSON, "body is not JSON: nested deeper than 254 levels"
    )


@pytest.mark.parametrize(
    "number",
    [
        9223372036854775807,  # 2**63 - 1: orjson's own
        9223372036854775808,  # 2**63: 19 digits, past orjson's
        -9223372036854775809,  # below -2**63: 19 digits
        18446744073709551616,  # 2**64: 20 digits
        123456789012345678901234567890,
    ],
)
def test_an_integer_past_64_bits_keeps_every_digit(number: int) -> None:
    """Snowflake IDs and balances: a JSON integer orjson would turn into a float is read
    exactly, whatever its sign and wherever it stands."""
    raw = b'{"id": %d, "ids": [1, %d]}' % (number, number)
    decoded = decode_body(raw, "application/json", BodyMode.AUTO).value
    assert decoded == {"id": number, "ids": [1, number]}
    assert type(decoded["id"]) is int
