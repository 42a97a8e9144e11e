"""The record: field order, error shape, typed extra fields, only valid text."""

from __future__ import annotations

from fetchmany.records import FIELDS, ErrorKind, FetchError, Record, valid_text


def test_record_dict_has_the_documented_field_order_and_error_shape() -> None:
    record = Record(0, "in", "http://h.test/", error=FetchError(ErrorKind.DNS, "no such host"))
    data = record.to_dict()
    assert list(data) == [
        "index", "input", "url", "ok", "status", "final_url", "content_type", "etag",
        "last_modified", "size", "elapsed_ms", "attempts", "error", "body",
    ]  # fmt: skip
    assert data["error"] == {"kind": "dns", "message": "no such host"}
    assert list(record.to_dict(("url", "index"))) == ["url", "index"]


def test_picks_and_saved_files_are_fields_too() -> None:
    record = Record(0, "in", None, picks={"title": "x", "n": 2}, path="/d/0.json", sha256="ab")
    assert record.to_dict(("input", "title", "n", "path", "sha256", "missing")) == {
        "input": "in",
        "title": "x",
        "n": 2,
        "path": "/d/0.json",
        "sha256": "ab",
        "missing": None,
    }


def test_valid_text_escapes_what_cannot_be_written() -> None:
    assert valid_text("caf\udce9") == "caf\\xe9"  # a byte that was not UTF-8
    assert valid_text("a\ud800b") == "a\\ud800b"  # a lone surrogate from JSON
    assert valid_text("plain é") == "plain é"
    # The edges of the surrogate range, found by mutation testing: the last surrogate is
    # escaped, and the first character past the range, beside one, is kept.
    assert valid_text("\udfff") == "\\udfff"
    assert valid_text("\ud800\ue000") == "\\ud800\ue000"
    assert valid_text("\udcff\udd00") == "\\xff\\udd00"  # past the bytes' range: not a byte


def test_the_default_fields_fast_path_matches_the_general_one() -> None:
    """to_dict spells the default fields out (it runs once per record); it must say
    exactly what the general path says, in the same order."""
    record = Record(3, "in", "http://h.test/", True, 200, "http://h.test/", "text/plain", 2)
    record.error = FetchError(ErrorKind.INVALID_JSON, "no")
    record.body, record.elapsed_ms, record.attempts = "ok", 1.5, 2
    general = record.to_dict(tuple(list(FIELDS)))
    assert list(record.to_dict()) == list(general) == list(FIELDS)
    assert record.to_dict() == general
