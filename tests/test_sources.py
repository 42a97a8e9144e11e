"""Reading items lazily, expanding templates, and turning bad lines into records, not crashes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Final

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from fetchmany.fetch.policy import plan_request
from fetchmany.input import sources
from fetchmany.input.rows import InputError, InputFormat
from fetchmany.input.sources import (
    _QUEUED_CHUNKS,
    CHUNK_ITEMS,
    Item,
    LineFeed,
    Shard,
    count_items,
    host_shard,
    item_chunks_from,
    item_text,
    items_from,
    make_item,
    parse_url,
    read_item_chunks,
    read_items,
)
from fetchmany.input.templates import RequestTemplate, TemplateError, url_template
from fetchmany.records import ErrorKind, FetchError
from fetchmany.redaction import redact_valid

NO_TEMPLATE = RequestTemplate()


def with_url(template: str) -> RequestTemplate:
    return RequestTemplate(url_template(template))


def test_template_percent_encodes_the_id_as_one_component() -> None:
    template = with_url("https://api.example.test/posts?id={}&page=2")
    assert (
        make_item(0, "a b&c", template).url == "https://api.example.test/posts?id=a%20b%26c&page=2"
    )
    # url shows the URL as sent: the value percent-encoded whole, sent as it stands
    # (not decoded again, as yarl used to leave / and ? bare in a query).
    sent = make_item(0, "../x/?#&y=1", template)
    assert sent.url == "https://api.example.test/posts?id=..%2Fx%2F%3F%23%26y%3D1&page=2"
    assert sent.target is not None
    assert dict(sent.target.query) == {"id": "../x/?#&y=1", "page": "2"}


def test_template_accepts_named_id_placeholder_and_repeats() -> None:
    assert (
        make_item(0, "7", with_url("http://h.test/{id}/again/{}")).url == "http://h.test/7/again/7"
    )


def test_template_without_placeholder_is_refused() -> None:
    with pytest.raises(TemplateError, match="no placeholder"):
        plan_request(template="http://h.test/fixed")
    with pytest.raises(TemplateError, match="empty object"):
        plan_request(template="http://h.test/fixed", json='{"id": {}}')
    assert plan_request(template="http://h.test/fixed", json='{"id": {id}}').method == "POST"


@pytest.mark.parametrize(
    ("text", "kind_or_url"),
    [
        ("http://h.test/a", "http://h.test/a"),
        ("HTTPS://H.test/a", "HTTPS://H.test/a"),  # as given: a valid URL is not rewritten
        ("http://h.test/a b", "http://h.test/a%20b"),
        ("http://h.test/a\tb", ErrorKind.INVALID_URL),  # a tab would be dropped on the wire
        ("ftp://h.test/a", ErrorKind.INVALID_URL),
        ("https://", ErrorKind.INVALID_URL),
        ("http://h.test:99999/", ErrorKind.INVALID_URL),
        ("42", ErrorKind.INVALID_URL),  # an ID without a template
    ],
)
def test_items_are_urls_or_invalid_records(text: str, kind_or_url: object) -> None:
    item = make_item(3, text, NO_TEMPLATE)
    assert item.index == 3
    assert item.input == text
    if isinstance(kind_or_url, ErrorKind):
        assert item.error is not None
        assert item.error.kind is kind_or_url
    else:
        assert item.error is None
        assert item.url == kind_or_url


def test_urls_are_not_expanded_when_a_template_is_given() -> None:
    template = with_url("http://api.test/{}")
    assert make_item(0, "https://other.test/x", template).url == "https://other.test/x"
    assert make_item(1, "5", template).url == "http://api.test/5"


def test_non_utf8_bytes_are_percent_encoded_and_shown_escaped() -> None:
    text = b"caf\xe9".decode("utf-8", "surrogateescape")
    item = make_item(0, text, with_url("http://api.test/?q={}"))
    assert item.url == "http://api.test/?q=caf%E9"
    assert item.input == "caf\\xe9"
    item.input.encode("utf-8")  # safe to serialise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"  x  \r\n", "x"), (b"\n", None), (b"   \t\n", None), (b"# c\n", None), (b"  #c", None)],
)
def test_blank_and_comment_lines_are_skipped(raw: bytes, expected: str | None) -> None:
    assert item_text(raw) == expected


async def collect(paths: list[str]) -> list[tuple[int, str]]:
    return [(i.index, i.input) async for i in read_items(paths, NO_TEMPLATE)]


async def test_read_items_indexes_across_files_skipping_blanks(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_bytes(b"# header\nhttp://h.test/1\n\n  http://h.test/2  \n")
    b.write_bytes(b"http://h.test/3")  # no trailing newline
    assert await collect([str(a), str(b)]) == [
        (0, "http://h.test/1"),
        (1, "http://h.test/2"),
        (2, "http://h.test/3"),
    ]
    assert count_items(str(a)) == 2


async def test_read_items_handles_lines_longer_than_a_chunk(tmp_path: Path) -> None:
    long_url = "http://h.test/" + "x" * 200_000
    path = tmp_path / "long.txt"
    path.write_text(f"{long_url}\nhttp://h.test/short\n")
    got = await collect([str(path)])
    assert [text for _, text in got] == [long_url, "http://h.test/short"]


async def test_reader_reads_a_bounded_number_of_chunks_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "many.txt"
    with path.open("w") as f:
        for i in range(300_000):  # about 6 MB: a hundred chunks
            f.write(f"http://h.test/{i}\n")
    reads = 0
    taken = 0
    lead: list[int] = []

    class CountingFile(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            nonlocal reads
            reads += 1
            lead.append(reads - taken)  # chunks read but not yet taken by the loop
            return super().read(size)

    monkeypatch.setattr(sources, "_open_input", lambda name, fd=None: CountingFile(name, "rb"))
    feed = LineFeed(str(path))
    lines = 0
    async for batch in feed.batches():
        taken += 1
        lines += len(batch)
    assert lines == 300_000
    # The thread races ahead of a consumer that does nothing else, but never further
    # than the chunks it may hand over (plus the one being read).
    assert max(lead) <= _QUEUED_CHUNKS + 1
    assert reads > 4 * _QUEUED_CHUNKS


async def test_library_items_keep_every_value_including_blank() -> None:
    items = [i async for i in items_from(["http://h.test/a", "", "# not a comment"], NO_TEMPLATE)]
    assert [i.index for i in items] == [0, 1, 2]
    assert items[1].error is not None
    assert items[2].error is not None


@pytest.mark.parametrize(
    ("input_format", "content", "expected"),
    [
        (InputFormat.LINES, b"\xef\xbb\xbf1\n2\n", ["1", "2"]),
        (InputFormat.CSV, b"\xef\xbb\xbfid,name\r\n1,a\r\n", ["1,a"]),
        (InputFormat.JSONL, b'\xef\xbb\xbf{"id": "1"}\n', ['{"id": "1"}']),
        (InputFormat.LINES, b"\xef\xbb\xbf", []),
        (InputFormat.LINES, b"1\n\xef\xbb\xbf2\n", ["1", "\ufeff2"]),  # only at the start
    ],
)
async def test_a_leading_byte_order_mark_is_ignored(
    tmp_path: Path, input_format: InputFormat, content: bytes, expected: list[str]
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    request = RequestTemplate(url_template("http://h.test/{id}"))
    items = [i async for i in read_items([str(path)], request, input_format)]
    assert [i.input for i in items] == expected
    assert all(i.error is None for i in items[: 1 if expected else 0])
    if items and input_format is not InputFormat.CSV:
        assert items[0].url == "http://h.test/1"
    assert count_items(str(path), input_format=input_format) == len(expected)


async def test_a_byte_order_mark_split_across_reads_is_still_found() -> None:
    read, write = os.pipe()
    os.set_blocking(read, True)

    def produce() -> None:
        for part in (b"\xef", b"\xbb", b"\xbf4", b"2\n"):
            os.write(write, part)
        os.close(write)

    threading.Thread(target=produce).start()
    feed = LineFeed(f"/dev/fd/{read}")
    lines = [line async for line in feed.lines()]
    os.close(read)
    assert lines == [b"42"]


async def test_utf16_input_is_refused_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes("1\n2\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        [i async for i in read_items([str(path)], NO_TEMPLATE)]


async def test_utf16_on_stdin_is_named_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message names the input as a user knows it: "stdin", not "-"."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("1\n".encode("utf-16"))))
    with pytest.raises(InputError) as refused:
        [i async for i in read_items(["-"], NO_TEMPLATE)]
    assert str(refused.value).startswith("stdin is UTF-16 text; convert it")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x", "expected K/N such as 0/4, got 'x'"),
        ("1/x", "expected K/N such as 0/4, got '1/x'"),
        ("4/4", "expected K/N with 0 <= K < N, got '4/4'"),
        ("-1/4", "expected K/N with 0 <= K < N, got '-1/4'"),
        ("0/0", "expected K/N with 0 <= K < N, got '0/0'"),
    ],
)
def test_a_bad_shard_says_what_it_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^expected K/N") as refused:
        Shard.parse(text)
    assert str(refused.value) == message


def test_a_shard_is_read_as_k_of_n() -> None:
    assert Shard.parse(" 3/8 ") == Shard(3, 8)
    assert [i for i in range(20) if Shard.parse("3/8").holds(i)] == [3, 11, 19]
    # The ends: the first shard, and a job of one shard (a recipe's N may be 1).
    assert Shard.parse("0/4") == Shard(0, 4)
    assert Shard.parse("0/1") == Shard(0, 1)


def test_a_shards_size_is_how_many_of_the_items_it_holds() -> None:
    """The progress total of ``--shard K/N`` over a counted file, and which ``-P``
    workers have items to check on a resume: every total, from none to a few rounds."""
    for count in range(1, 6):
        for number in range(count):
            shard = Shard(number, count)
            for total in range(3 * count + 2):
                held = [i for i in range(total) if shard.holds(i)]
                assert shard.size(total) == len(held), (shard, total)


def test_a_hosts_shard_is_the_documented_hash_on_every_machine() -> None:
    """docs/scale-out.md: BLAKE2b (64 bits, big-endian) of the origin's scheme, host in
    lower case and port, mod N, the same in every release, so that machines running
    different releases of a job still agree. Spelled out here, not called, so that a
    change to it fails."""

    def documented(origin: str, count: int) -> int:
        digest = hashlib.blake2b(origin.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % count

    cases = [
        ("http://example.com/a", "http://example.com:80"),
        ("HTTP://Example.COM:80/b?c", "http://example.com:80"),
        ("https://api.example.com/v1/", "https://api.example.com:443"),
        ("https://api.example.com:8443/", "https://api.example.com:8443"),
        ("https://例子.测试/", "https://xn--fsqu00a.xn--0zwm56d:443"),
    ]
    for count in (2, 3, 7, 1000):
        for url, origin in cases:
            item = make_item(0, url, NO_TEMPLATE)
            assert item.target is not None
            assert host_shard(item.target, count) == documented(origin, count), (url, count)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://a.test/\tb", "URL contains a control character ('\\t')"),
        ("http://a\x7fb.test/", "URL contains a control character ('\\x7f')"),
        ("ftp://h.test/", "only http and https URLs are fetched"),
        ("file:///etc/passwd", "only http and https URLs are fetched"),
        ("http://[::1/", "not a valid URL: Invalid IPv6 URL"),
        ("http://a.test:99999/", "not a valid URL: Port out of range 0-65535"),
        ("http://xn--a.test/", "host is not a valid internationalised name: xn--a.test"),
        ("http:///path", "URL has no host"),
        ("http://a b.test/", "host 'a b.test' holds a space or control character"),
        (
            "http://a%3Ab:pw@h.test/",
            "the user name holds ':' (%3A), which Basic auth cannot send; put it in the password",
        ),
        (
            "http://a\u200b.test/",
            "host is not a valid internationalised name: "
            "Host 'a\\u200b.test' cannot contain '\\u200b' (at position 1)",
        ),
    ],
)
def test_a_url_that_cannot_be_fetched_says_why(url: str, message: str) -> None:
    """The reason is the record's error message: what is wrong, and which part."""
    assert parse_url(url) == message


@pytest.mark.parametrize(
    "url", ["http://alice:s3cret@h.test/", "http://a:b:c@h.test/", "http://@h.test/"]
)
def test_a_url_with_a_user_is_sent_as_given(url: str) -> None:
    """Only a ':' in the user name itself (%3A) cannot be sent; a password may hold one."""
    parsed = parse_url(url)
    assert isinstance(parsed, tuple)
    assert parsed[0] == url


@pytest.mark.parametrize(
    ("text", "request_", "fields", "url", "message"),
    [
        (
            "99999",
            with_url("http://h.test:{}/"),
            None,
            "http://h.test:99999/",
            "not a valid URL: Port out of range 0-65535",
        ),
        (
            "ftp://u:pw@h.test/x",
            NO_TEMPLATE,
            {"url": "ftp://u:pw@h.test/x"},
            "ftp://u:****@h.test/x",
            "only http and https URLs are fetched",
        ),
    ],
)
def test_an_invalid_urls_record_shows_the_url_it_made_masked(
    text: str, request_: RequestTemplate, fields: dict[str, str] | None, url: str, message: str
) -> None:
    """The record says which URL could not be fetched, as expanded, without its secret."""
    item = make_item(3, text, request_, fields)
    assert (item.url, item.target, item.error) == (
        url,
        None,
        FetchError(ErrorKind.INVALID_URL, message),
    )


def test_a_rows_url_fills_the_template_even_when_it_is_a_url_itself() -> None:
    """Only a plain line that is a URL is used as it stands: a row's fields always fill
    the template, and stay with the item (``--save-name`` reads them)."""
    fields = {"url": "http://a.test/1"}
    item = make_item(0, "http://a.test/1", with_url("http://b.test/?u={url}"), fields)
    assert item.url == "http://b.test/?u=http%3A%2F%2Fa.test%2F1"
    assert item.fields == fields
    plain = make_item(0, "http://a.test/1", NO_TEMPLATE, fields)
    assert (plain.url, plain.fields) == ("http://a.test/1", fields)


async def test_comment_lines_are_skipped_in_json_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'# exported rows\n{"url": "http://h.test/1"}\n  # more\n\n')
    items = [i async for i in read_items([str(path)], NO_TEMPLATE, InputFormat.JSONL)]
    assert [i.url for i in items] == ["http://h.test/1"]
    assert count_items(str(path), input_format=InputFormat.JSONL) == 1


async def test_a_csv_header_naming_a_column_twice_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"id,name,id\n1,a,2\n")
    with pytest.raises(InputError, match="column 'id' twice"):
        [i async for i in read_items([str(path)], NO_TEMPLATE, InputFormat.CSV)]


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("http://h.test/a b", "http://h.test/a%20b"),
        ("http://H.test:80/%7e?q=é", "http://H.test:80/%7e?q=%C3%A9"),
        ("http://h.test/p?s=x%2Fy%3D&q=a b+c", "http://h.test/p?s=x%2Fy%3D&q=a%20b+c"),
        ("http://h.test/a/./b/../c?d=/../", "http://h.test/a/c?d=/../"),
        ("http://пример.рф/", "http://xn--e1afmkfd.xn--p1ai/"),
    ],
)
def test_url_is_the_url_as_sent(text: str, sent: str) -> None:
    item = make_item(0, text, NO_TEMPLATE)
    assert item.target is not None
    assert item.url == sent
    # what aiohttp is handed is what is recorded: the request target, the host
    assert item.target == URL(sent, encoded=True)


@pytest.mark.parametrize("control", ["\t", "\x00", "\x1b", "\x7f", "\r"])
def test_a_url_with_a_control_character_is_invalid(control: str) -> None:
    item = make_item(0, f"http://h.test/a{control}b", NO_TEMPLATE)
    assert item.error is not None
    assert item.error.kind is ErrorKind.INVALID_URL
    assert "control character" in item.error.message


@pytest.mark.parametrize(
    "url", ["http://xn--zz/", "http://a.xn--zz.example/", "https://xn--a.test/"]
)
def test_a_host_that_is_not_valid_idna_is_an_invalid_url(url: str) -> None:
    item = make_item(0, url, NO_TEMPLATE)
    assert item.error is not None
    assert item.error.kind is ErrorKind.INVALID_URL
    assert "internationalised" in item.error.message


@pytest.mark.parametrize(
    ("value", "request_template"),
    [
        ("http://h.test/\ud800", NO_TEMPLATE),
        ("\udfff", with_url("http://h.test/{}")),
        ("1", plan_request(template="http://h.test/", data="x=\ud800{}").templates),
    ],
)
def test_a_lone_surrogate_is_an_invalid_item_not_a_crash(
    value: str, request_template: RequestTemplate
) -> None:
    item = make_item(0, value, request_template)
    assert item.error is not None
    assert "lone surrogate" in item.error.message


async def test_library_mappings_take_any_json_value_as_json_lines_rows_do() -> None:
    rows = [{"id": 5, "tags": ["a", 1], "gone": None}, {"id": 6, "tags": None}]
    first, second = [i async for i in items_from(rows, with_url("http://h.test/{id}?t={tags}"))]
    assert first.url == "http://h.test/5?t=%5B%22a%22%2C1%5D"
    assert second.error is not None  # None is a missing field, as in JSON Lines
    assert "'tags'" in second.error.message


async def test_library_scalars_are_ids_and_none_is_an_empty_item() -> None:
    values = [7, None, b"x\xff", 2.5]
    items = [i async for i in items_from(values, with_url("http://h.test/{}"))]
    assert [i.url for i in items] == [
        "http://h.test/7",
        None,
        "http://h.test/x%FF",
        "http://h.test/2.5",
    ]
    assert items[1].error is not None


@pytest.mark.parametrize("value", [".", ".."])
def test_a_dot_segment_value_cannot_move_the_request_up_the_path(value: str) -> None:
    item = make_item(0, value, with_url("http://h.test/api/{}/detail"))
    assert item.error is not None
    assert item.target is None


@pytest.mark.parametrize(
    ("value", "template", "url"),
    [
        ("...", "http://h.test/api/{}", "http://h.test/api/..."),
        ("..", "http://h.test/api?q={}", "http://h.test/api?q=.."),
        ("a", "http://h.test/x/../{}", "http://h.test/a"),  # the template's own, as written
    ],
)
def test_dots_elsewhere_are_plain_values(value: str, template: str, url: str) -> None:
    assert make_item(0, value, with_url(template)).url == url


async def test_a_lone_carriage_return_ends_a_line(tmp_path: Path) -> None:
    path = tmp_path / "mac.txt"
    path.write_bytes(b"1\r2\r\n3\r")
    items = [i.input async for i in read_items([str(path)], with_url("http://h.test/{}"))]
    assert items == ["1", "2", "3"]
    assert count_items(str(path)) == 3


async def test_an_input_that_fails_while_read_ends_the_run_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(sources.InputUnreadable, match=f"cannot read {tmp_path}: Is a directory"):
        [i async for i in read_items([str(tmp_path)], NO_TEMPLATE)]


@pytest.mark.parametrize("url", ["http://a b/x", "http://a\u3000b/x", "http://a\tb/"])
def test_a_host_with_a_space_is_an_invalid_url(url: str) -> None:
    item = make_item(0, url, NO_TEMPLATE)
    assert item.error is not None
    assert item.error.kind is ErrorKind.INVALID_URL


def test_a_control_character_after_a_non_utf8_byte_is_still_refused() -> None:
    line = "http://h.test/\udc80\tx"  # the byte 0x80 as the reader keeps it, then a tab
    item = make_item(0, line, NO_TEMPLATE)
    assert item.error is not None
    assert "control character" in item.error.message


@pytest.mark.parametrize("ending", [b"\n", b""])
async def test_a_line_longer_than_an_item_may_be_is_its_invalid_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: bytes
) -> None:
    """Found by a hostile tester: a file with no newline (3 GB of zeros) was read whole
    into memory, and a long line joined again at every chunk (a 100 MB line: 79 s)."""
    monkeypatch.setattr(sources, "MAX_LINE", 200_000)
    path = tmp_path / "ids.txt"
    path.write_bytes(b"1\n" + b"x" * 300_000 + b"\n2\n" + b"y" * 250_000 + ending)
    items = [i async for i in read_items([str(path)], with_url("http://h.test/{}"))]
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert [i.url for i in (items[0], items[2])] == ["http://h.test/1", "http://h.test/2"]
    for long, size in ((items[1], 300_000), (items[3], 250_000)):
        assert long.error is not None
        assert long.error.message == (
            f"line of {size:,} bytes, longer than an item may be (200,000 bytes)"
        )
        assert long.input.endswith("...")
        assert len(long.input) < 300
    assert count_items(str(path)) == 4
    comment = tmp_path / "comment.txt"
    comment.write_bytes(b"1\n# " + b"c" * 300_000 + b"\n2\n")
    items = [i async for i in read_items([str(comment)], with_url("http://h.test/{}"))]
    assert [i.input for i in items] == ["1", "2"]  # a comment, however long, is skipped
    assert count_items(str(comment)) == 2


def test_counting_follows_the_reader_over_long_files_with_lone_crs(tmp_path: Path) -> None:
    """Found by a hostile tester: a CR-only file over 64 KiB counted 12,775 of 100,000."""
    path = tmp_path / "cr.txt"
    path.write_bytes(b"\r".join(b"%d" % i for i in range(100_000)) + b"\r")
    assert count_items(str(path)) == 100_000
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(b"\xef\xbb\xbf1\r\n  \n#c\n2\r3\n   # x\n" + b"y" * 200_000 + b"\n\n4")
    assert count_items(str(mixed)) == 5


@pytest.mark.parametrize("url", ["http://a%3Ab:pw@h.test/", "http://tok%3ASECRET@h.test/"])
def test_a_colon_in_the_user_name_is_an_invalid_url_not_an_unexpected_error(url: str) -> None:
    """Found by a hostile tester: aiohttp's BasicAuth refused it inside the request, an
    'unexpected' error (which docs/records.md calls a bug)."""
    item = make_item(0, url, NO_TEMPLATE)
    assert item.error is not None
    assert item.error.kind is ErrorKind.INVALID_URL
    assert "SECRET" not in (item.url or "")


async def test_blank_looking_rows_are_data_where_the_format_says_so(tmp_path: Path) -> None:
    """Found by a hostile tester: a CSV row of spaces (data, by the csv module and the
    docs/reference.md) and a JSON Lines line of NBSP were dropped without a record."""
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"a\n1\n   \n\n2\n")
    items = [
        i async for i in read_items([str(rows)], with_url("http://h.test/{a}"), InputFormat.CSV)
    ]
    assert [i.input for i in items] == ["1", "   ", "2"]
    assert count_items(str(rows), input_format=InputFormat.CSV) == 3
    lines = tmp_path / "rows.jsonl"
    lines.write_bytes('{"a": "1"}\n\u00a0\n  \n'.encode())
    got = [
        i async for i in read_items([str(lines)], with_url("http://h.test/{a}"), InputFormat.JSONL)
    ]
    assert [i.error is None for i in got] == [True, False]  # the NBSP line: not JSON
    assert count_items(str(lines), input_format=InputFormat.JSONL) == 2


async def test_a_crlf_inside_a_quoted_csv_cell_is_kept(tmp_path: Path) -> None:
    """Found by a hostile tester: the cell's CRLF became LF (the csv module keeps it)."""
    path = tmp_path / "rows.csv"
    path.write_bytes(b'id,name\r\n1,"a\r\nb"\r\n2,c\r\n')
    items = [
        i
        async for i in read_items(
            [str(path)], with_url("http://h.test/{id}?n={name}"), InputFormat.CSV
        )
    ]
    assert [i.input for i in items] == ['1,"a\r\nb"', "2,c"]
    assert [i.url for i in items] == ["http://h.test/1?n=a%0D%0Ab", "http://h.test/2?n=c"]


def test_sharding_by_host_puts_each_item_in_exactly_one_shard_with_its_host() -> None:
    items = [make_item(i, f"http://h{i % 7}.test/{i}", NO_TEMPLATE) for i in range(60)] + [
        make_item(60, "not a url", NO_TEMPLATE)
    ]
    shards = [Shard(k, 3, by_host=True) for k in range(3)]
    holders = [[k for k, shard in enumerate(shards) if shard.holds_item(item)] for item in items]
    assert all(len(held) == 1 for held in holders)
    by_host: dict[str | None, set[int]] = {}
    for item, held in zip(items[:60], holders[:60], strict=True):
        assert item.target is not None
        by_host.setdefault(item.target.host, set()).update(held)
    assert all(len(shard_numbers) == 1 for shard_numbers in by_host.values())
    assert len({next(iter(numbers)) for numbers in by_host.values()}) > 1  # spread out
    assert holders[60] == [60 % 3]  # no URL: by its index


async def test_rows_of_bytes_that_are_not_utf8_are_read_as_lines_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV and JSON Lines rows, long or not, keep an undecodable byte as ``\\xNN`` (the
    URL sends the byte itself), as a line of text does: never a crash. A JSON Lines
    row's CRLF is no part of it, and a CSV row longer than an item may be is one
    invalid record, its neighbours read as ever."""
    monkeypatch.setattr(sources, "MAX_LINE", 200_000)
    table = tmp_path / "rows.csv"
    table.write_bytes(b"id\n1\xff\n  x" + b"\xfe" * 300_000 + b"\n2\n")
    csv_items = [
        i async for i in read_items([str(table)], with_url("http://h.test/{id}"), InputFormat.CSV)
    ]
    assert [(i.index, i.input, i.url) for i in (csv_items[0], csv_items[2])] == [
        (0, "1\\xff", "http://h.test/1%FF"),
        (2, "2", "http://h.test/2"),
    ]
    long = csv_items[1]
    assert (long.index, long.url, long.error) == (
        1,
        None,
        FetchError(
            ErrorKind.INVALID_URL, "a row of 300,003 characters, longer than an item may be"
        ),
    )
    assert long.input.startswith("  x\\xfe\\xfe")
    lines = tmp_path / "rows.jsonl"
    lines.write_bytes(b'{"id":"1\xff"}\r\nnot json\xff\r\n{"id":"2"}\r\n')
    json_items = [
        i async for i in read_items([str(lines)], with_url("http://h.test/{id}"), InputFormat.JSONL)
    ]
    assert [(i.input, i.url) for i in json_items] == [
        ('{"id":"1\\xff"}', "http://h.test/1%FF"),
        ("not json\\xff", None),
        ('{"id":"2"}', "http://h.test/2"),
    ]
    plain = tmp_path / "ids.txt"
    plain.write_bytes(b"1\n" + b"\xff" * 300_000 + b"\n   # " + b"c" * 300_000 + b"\n2\n")
    line_items = [i async for i in read_items([str(plain)], with_url("http://h.test/{}"))]
    assert [i.input for i in line_items][::2] == ["1", "2"]  # the indented comment: skipped
    assert line_items[1].input.startswith("\\xff\\xff")


async def test_a_library_value_no_item_can_be_made_of_is_its_invalid_record() -> None:
    """Every value given is one item: one that cannot be read (a mapping that holds
    itself) is an invalid record at its index, named by its type; a mapping is shown
    as JSON, its text as it is (not \\u-escaped) and other values as their text."""
    import datetime

    looped: dict[str, object] = {"id": "1"}
    looped["self"] = looped
    values = [looped, {"id": "é", "when": datetime.date(2026, 12, 5)}]
    items = [i async for i in items_from(values, with_url("http://h.test/{id}"))]
    assert items[0] == Item(
        0,
        "dict value",
        None,
        error=FetchError(
            ErrorKind.INVALID_URL, "cannot be read as an item: Circular reference detected"
        ),
    )
    assert (items[1].index, items[1].input, items[1].url) == (
        1,
        '{"id": "é", "when": "2026-12-05"}',
        "http://h.test/%C3%A9",
    )


async def test_library_values_from_an_async_source_are_indexed_as_given() -> None:
    """An async iterable (a queue, a database cursor) as a list is: every value one item,
    indexed 0, 1, 2..., a blank one an invalid record that says so."""

    async def values() -> AsyncIterator[str]:
        for value in ("http://h.test/a", "  ", "http://h.test/c"):
            yield value

    items = [i async for i in items_from(values(), NO_TEMPLATE)]
    assert [(i.index, i.input) for i in items] == [
        (0, "http://h.test/a"),
        (1, "  "),
        (2, "http://h.test/c"),
    ]
    assert items[1] == Item(1, "  ", None, error=FetchError(ErrorKind.INVALID_URL, "empty item"))


URLS_OF_TWO_HOSTS: Final = [
    f"http://{host}.test/{name}"
    for host, name in zip(["h0", "h1", "h1", "h1", "h0", "h1", "h0"], "abcdefg", strict=True)
]


def urls_file(tmp_path: Path) -> str:
    """The URLs, with a blank line and a comment among them (counted by no index)."""
    lines = URLS_OF_TWO_HOSTS
    path = tmp_path / "urls.txt"
    path.write_text("\n".join([*lines[:2], "", *lines[2:5], "# not an item", *lines[5:]]) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("shard", "indexes"), [(Shard(0, 3), [0, 3, 6]), (Shard(1, 3), [1, 4]), (Shard(2, 3), [2, 5])]
)
async def test_a_shard_by_index_reads_its_items_keeping_their_index(
    tmp_path: Path, shard: Shard, indexes: list[int]
) -> None:
    items = [i async for i in read_items([urls_file(tmp_path)], NO_TEMPLATE, shard=shard)]
    assert [(i.index, i.input) for i in items] == [(n, URLS_OF_TWO_HOSTS[n]) for n in indexes]


async def test_shards_by_host_split_the_items_whole_by_host(tmp_path: Path) -> None:
    """Every item in exactly one shard, keeping its index; a host's items all in one."""
    path = urls_file(tmp_path)
    shards = [
        [(i.index, i.input) async for i in read_items([path], NO_TEMPLATE, shard=Shard(k, 2, True))]
        for k in (0, 1)
    ]
    assert sorted(shards[0] + shards[1]) == list(enumerate(URLS_OF_TWO_HOSTS))
    for k, shard in enumerate(shards):
        assert shard == sorted(shard)
        assert all(host_shard(URL(url), 2) == k for _, url in shard)


@pytest.mark.parametrize(
    ("shard", "expected"),
    [
        (None, [(0, "1,a", None), (1, '2,"b', "unclosed")]),
        (Shard(0, 2), [(0, "1,a", None)]),
        (Shard(1, 2), [(1, '2,"b', "unclosed")]),
    ],
)
async def test_a_csv_that_ends_inside_a_quoted_cell_ends_in_that_rows_invalid_record(
    tmp_path: Path, shard: Shard | None, expected: list[tuple[int, str, str | None]]
) -> None:
    """The row the file ends in has its record, at its index, in its shard only."""
    path = tmp_path / "rows.csv"
    path.write_bytes(b'id,name\n1,a\n2,"b')
    items = [
        i
        async for i in read_items(
            [str(path)], with_url("http://h.test/{id}"), InputFormat.CSV, shard=shard
        )
    ]
    unclosed = FetchError(
        ErrorKind.INVALID_URL, "a quoted cell is never closed: the file ends in it"
    )
    assert [(i.index, i.input, None if i.error is None else "unclosed") for i in items] == expected
    assert [i.error for i in items if i.error is not None] == [
        unclosed for _, _, why in expected if why
    ]


async def test_a_worker_reads_its_input_from_the_descriptor_it_was_given(tmp_path: Path) -> None:
    """-P: a worker reads its copy of a pipe from a descriptor, under the pipe's name,
    by index or by host alike."""
    path = tmp_path / "ids.txt"
    path.write_bytes(b"http://h.test/1\nhttp://h.test/2\n")
    for shard in (None, Shard(0, 1, by_host=True)):
        fd = os.open(path, os.O_RDONLY)
        items = read_items(["-"], NO_TEMPLATE, shard=shard, streams={0: fd})
        assert [(i.index, i.input) async for i in items] == [
            (0, "http://h.test/1"),
            (1, "http://h.test/2"),
        ]


@pytest.mark.parametrize("bad_at", [0, 1, 2])
async def test_an_input_that_cannot_be_read_says_whether_records_came_before_it(
    tmp_path: Path, bad_at: int
) -> None:
    """The first input refused is a usage error (nothing fetched yet); a later one ends a
    run whose output is incomplete (exit 75): ``later`` tells them apart."""
    paths = []
    for n in range(3):
        path = tmp_path / f"in{n}.txt"
        path.write_bytes(b"\xff\xfeh\x00" if n == bad_at else f"http://h.test/{n}\n".encode())
        paths.append(str(path))
    with pytest.raises(InputError) as refused:
        [i async for i in read_items(paths, NO_TEMPLATE)]
    assert refused.value.later is (bad_at > 0)


# -- the common line: a URL fit to send as it stands, made an item in one step ---------------

FIT_PIECES = st.lists(
    st.sampled_from([*"aZ09-._~!$&'()*+,;=:@/?#%", "%2F", "%zz", "xn--", "http://u:p@k/"]),
    max_size=8,
).map("".join)


@given(
    st.sampled_from(["http://h.test", "https://H.test:8080", "http://xn--zz", "http://a.xn--a"]),
    FIT_PIECES,
)
@example("http://h.test", "/x?next=http://bob:hunter2@k.test/")  # credentials nested in a query
@example("http://xn--zz", "/")  # a host that is not valid IDNA
def test_a_url_line_is_made_an_item_as_the_whole_way_makes_it(host: str, rest: str) -> None:
    """A line that is an http(s) URL fit to send takes a shortcut to its item: it must be
    the item the whole way (``parse_url``, credentials masked) gives, or its error."""
    text = host + "/" + rest.lstrip("/")
    item = make_item(7, text, NO_TEMPLATE)
    whole = parse_url(text)
    assert (item.index, item.input) == (7, text)
    if isinstance(whole, str):
        assert item.error == FetchError(ErrorKind.INVALID_URL, whole)
        assert item.target is None
        return
    sent, target = whole
    assert item.error is None
    assert item.url == redact_valid(sent)
    assert item.target == target
    assert str(item.target) == str(target)
    assert "hunter2" not in (item.url or "")


def test_a_url_line_with_a_body_template_still_gets_its_body() -> None:
    request = plan_request(data="id={}").templates
    item = make_item(0, "http://h.test/a?b=1", request)
    assert item.url == "http://h.test/a?b=1"
    assert item.data == b"id=http%3A%2F%2Fh.test%2Fa%3Fb%3D1"  # the line, form-encoded


@pytest.mark.parametrize(
    ("template", "fields", "missing"),
    [("http://h.test/{}", {"id": "1"}, "{}"), ("http://h.test/{owner}", {"id": "1"}, "owner")],
)
def test_a_row_without_the_field_a_template_names_is_an_invalid_record_naming_it(
    template: str, fields: dict[str, str], missing: str
) -> None:
    """A library item's mapping (no input format to check the template against first):
    the record names the field it lacks, ``{}`` for the unnamed placeholder."""
    item = make_item(0, "row", RequestTemplate(url_template(template), None), fields)
    assert (item.url, item.target) == (None, None)
    assert item.error == FetchError(
        ErrorKind.INVALID_URL, f"row has no field {missing!r} for the template"
    )


def _lines_of_the_whole(content: bytes, max_line: int) -> list[object]:
    """What a reader of ``content`` in one piece hands over: the lines of the input
    without a leading BOM, a CR or CRLF ending a line as LF does, blank lines left out
    (the reader may hand over blanks, which no item is made of), and a line longer than
    ``max_line`` as (its start, its size, its double quotes)."""
    content = content.removeprefix(sources.BOM).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines: list[object] = []
    for line in content.split(b"\n"):
        if len(line) > max_line:
            lines.append((line[: sources._SHOWN], len(line), line.count(b'"')))
        elif line:
            lines.append(line)
    return lines


def _lines_read_in_chunks(path: Path, chunk: int) -> list[object]:
    async def read() -> list[object]:
        lines: list[object] = []
        async for line in LineFeed(str(path)).lines():
            if isinstance(line, sources.LongLine):
                lines.append((bytes(line), line.size, line.quotes))
            elif line:
                lines.append(line)
        return lines

    return asyncio.run(read())


def test_utf16_is_told_by_its_mark_in_either_byte_order(tmp_path: Path) -> None:
    """A spreadsheet's "Unicode text" is little-endian; big-endian comes from other tools.
    Both are refused with the way out. A zero byte without the mark is no UTF-16: the
    line is read (and refused as a URL, for its control character)."""
    for order in ("utf-16-le", "utf-16-be"):
        path = tmp_path / order
        mark = b"\xff\xfe" if order.endswith("le") else b"\xfe\xff"
        path.write_bytes(mark + "1\n2\n".encode(order))
        with pytest.raises(InputError, match="is UTF-16 text; convert it"):
            asyncio.run(_items_of(path))
    for content in (b"ab\x00c\n", b"abc\x00\n"):
        path = tmp_path / "zero"
        path.write_bytes(content)
        items = asyncio.run(_items_of(path))
        assert [(i.input, i.error.kind if i.error else None) for i in items] == [
            (content.strip().decode(), ErrorKind.INVALID_URL)
        ]


async def _items_of(path: Path, input_format: InputFormat = InputFormat.LINES) -> list[Item]:
    return [i async for i in read_items([str(path)], NO_TEMPLATE, input_format)]


@given(
    st.lists(
        st.sampled_from(
            [b"a", b"X", b",", b"#", b" ", b"\t", b"\xc2\xa0", b"\r", b"\n", b"\r\n", sources.BOM]
        ),
        max_size=30,
    ),
    st.booleans(),
    st.integers(3, 8),  # a chunk holds a BOM whole, as any read of a file's start does
    st.sampled_from(list(InputFormat)),
)
@example([b"a", b"\r", b"\n", b"#", b"\r", b"a"], False, 3, InputFormat.LINES)
@example([b" ", b"\n", b" ", b"\n", b"a"], True, 3, InputFormat.CSV)
@example([b"X", b"\n", b"\r\n", b"a"], False, 3, InputFormat.CSV)  # only CRs are blank in CSV
def test_the_progress_total_is_the_number_of_items_read(
    parts: list[bytes], bom: bool, chunk: int, input_format: InputFormat
) -> None:
    """count_items, the progress bar's total, reads a file its own way (no items made,
    one byte kept a line): it must agree with the reader on every line ending, blank,
    comment and byte-order mark, however its reads fall. For CSV (no quotes drawn: a
    row spanning lines makes the total an estimate), a line of spaces is a row."""
    if input_format is InputFormat.CSV:  # a header of its own, then rows
        parts = [b"url,name\n", *(part for part in parts if part != b"\r")]  # CR: a cell's
    content = (sources.BOM if bom else b"") + b"".join(parts)
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as directory:
        patch.setattr(sources, "_CHUNK", chunk)
        path = Path(directory) / "input"
        path.write_bytes(content)

        items = asyncio.run(_items_of(path, input_format))
        assert count_items(str(path), input_format=input_format) == len(items)


def test_the_progress_total_is_unknown_for_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """Counting stdin or a FIFO would consume it; a directory is refused when read."""
    assert count_items("-") is None
    assert count_items(str(tmp_path)) is None
    assert count_items(str(tmp_path / "missing")) is None


def test_counting_stops_when_told(tmp_path: Path) -> None:
    """The run ends (the input was read to its end first, or the user pressed Ctrl-C):
    a count still going gives up, unknown, rather than read on."""
    path = tmp_path / "urls"
    path.write_bytes(b"http://h.test/\n" * 10)
    stop = threading.Event()
    assert count_items(str(path), stop) == 10
    stop.set()
    assert count_items(str(path), stop) is None


def test_counting_stops_when_told_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told after it began: it gives up at its next look (every 64 reads), not at the end
    of a file that may be gigabytes long."""

    class SetOnceLookedAt(threading.Event):
        looks = 0

        def is_set(self) -> bool:
            self.looks += 1
            return self.looks > 1  # set after the first look, as the count reads on

    monkeypatch.setattr(sources, "_CHUNK", 4)
    path = tmp_path / "urls"
    path.write_bytes(b"1\n" * 1000)  # 500 reads
    stop = SetOnceLookedAt()
    assert count_items(str(path), stop) is None
    assert stop.looks == 2


def test_a_lone_cr_in_a_quoted_csv_cell_is_no_row_of_its_own_in_the_total(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b'url,name\nhttp://h.test/1,"a\rb"\nhttp://h.test/2,c\n')
    assert count_items(str(path), input_format=InputFormat.CSV) == 2


class _Clock:
    """perf_counter for item_chunks_from: each look a quarter second later (exact in
    binary, so the edges fall where they are written)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def perf_counter(self) -> float:
        now = self.now
        self.now += self.step
        return now


@pytest.mark.parametrize(("step", "sizes"), [(0.0, [64, 64, 64, 8]), (0.25, [3] * 66 + [2])])
async def test_library_values_come_in_chunks_of_64_or_of_what_came_in_a_while(
    monkeypatch: pytest.MonkeyPatch, step: float, sizes: list[int]
) -> None:
    """A fast iterable, in chunks of LIBRARY_CHUNK; a slow one (a paging API behind a
    generator), in chunks of what came within LIBRARY_CHUNK_SECONDS, so that its first
    values are fetched while it goes on. Half a second here, on a clock a quarter second
    a look: the third value of each chunk is past it."""
    monkeypatch.setattr(sources, "time", _Clock(step))
    monkeypatch.setattr(sources, "LIBRARY_CHUNK_SECONDS", 0.5)
    values = (f"http://h.test/{n}" for n in range(200))
    chunks = [chunk async for chunk in item_chunks_from(values, NO_TEMPLATE)]
    assert [len(chunk) for chunk in chunks] == sizes
    assert [item.index for chunk in chunks for item in chunk] == list(range(200))


async def test_library_values_given_before_the_iterable_raised_are_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A generator that raises part way (a paging API that failed): the values it gave
    come out as items first, the chunk not yet full among them, then its error."""
    monkeypatch.setattr(sources, "LIBRARY_CHUNK_SECONDS", 3600.0)  # chunks by size alone

    def values() -> Iterator[str]:
        for n in range(70):  # one whole chunk of LIBRARY_CHUNK, and 6 more
            yield f"http://h.test/{n}"
        raise RuntimeError("the source broke")

    chunks: list[Sequence[Item]] = []

    async def take() -> None:
        async for chunk in item_chunks_from(values(), NO_TEMPLATE):
            chunks.append(chunk)

    with pytest.raises(RuntimeError, match=r"^the source broke$"):
        await take()
    assert [len(chunk) for chunk in chunks] == [64, 6]
    assert [item.index for chunk in chunks for item in chunk] == list(range(70))


async def test_items_come_in_chunks_of_at_most_chunk_items(tmp_path: Path) -> None:
    """One read completes 600 short lines: the engine takes them in chunks it can hold
    without an await each, none larger than CHUNK_ITEMS (an item costs memory until it is
    fetched), and none smaller than it need be."""
    path = tmp_path / "ids"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(600)))
    chunks = [c async for c in read_item_chunks([str(path)], with_url("http://h.test/{}"))]
    assert [len(chunk) for chunk in chunks] == [CHUNK_ITEMS, CHUNK_ITEMS, 600 - 2 * CHUNK_ITEMS]
    assert [item.index for chunk in chunks for item in chunk] == list(range(600))


async def test_a_csv_that_ends_inside_a_quote_keeps_the_next_files_indexes(
    tmp_path: Path,
) -> None:
    """The row left open is one invalid record at its index; the next file goes on after
    it, so every record keeps its place (--merge, --resume and --expect count on it)."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(b'url\nhttp://h.test/1\n"http://h.test/2\n')
    second.write_bytes(b"url\nhttp://h.test/3\n")
    paths = [str(first), str(second)]
    items = [i async for i in read_items(paths, NO_TEMPLATE, InputFormat.CSV)]
    assert [(i.index, i.url, i.error is None) for i in items] == [
        (0, "http://h.test/1", True),
        (1, None, False),
        (2, "http://h.test/3", True),
    ]


async def test_every_line_of_a_batch_with_a_long_line_is_an_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line too long to be an item is one invalid record, at its place; the lines read
    with its end in the same chunk are items all the same, each at its own index."""
    monkeypatch.setattr(sources, "MAX_LINE", 100)
    monkeypatch.setattr(sources, "_CHUNK", 128)  # the long line spans two reads
    path = tmp_path / "urls"
    path.write_bytes(b"x" * 150 + b"\nhttp://h.test/1\n\nhttp://h.test/2\n# done\n")
    items = await _items_of(path)
    assert [(i.index, i.url, i.error and i.error.message) for i in items] == [
        (0, None, "line of 150 bytes, longer than an item may be (100 bytes)"),
        (1, "http://h.test/1", None),
        (2, "http://h.test/2", None),
    ]


async def test_a_byte_that_is_not_utf8_is_sent_as_it_came(tmp_path: Path) -> None:
    """Shown as ``\\xNN`` in the record's input, sent percent-encoded in the URL: never a
    crash, and never another byte."""
    path = tmp_path / "urls"
    path.write_bytes(b"http://h.test/a\xffb\n")
    items = await _items_of(path)
    assert [(i.input, i.url) for i in items] == [("http://h.test/a\\xffb", "http://h.test/a%FFb")]


async def test_a_lone_cr_ends_a_line_but_not_a_csv_cell(tmp_path: Path) -> None:
    """Classic Mac files end lines with a CR alone; inside a quoted CSV cell, a CR is the
    cell's own."""
    lines = tmp_path / "urls"
    lines.write_bytes(b"http://h.test/1\rhttp://h.test/2\r")
    assert [i.url for i in await _items_of(lines)] == ["http://h.test/1", "http://h.test/2"]
    table = tmp_path / "rows.csv"
    table.write_bytes(b'url,name\nhttp://h.test/1,"a\rb"\n')
    rows = await _items_of(table, InputFormat.CSV)
    assert [(i.url, i.fields) for i in rows] == [
        ("http://h.test/1", {"url": "http://h.test/1", "name": "a\rb"})
    ]


async def test_a_json_lines_rows_input_is_the_row_as_given_without_its_line_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"url": "http://h.test/1"}\r\n {"url": "http://h.test/2"} \r\n')
    rows = await _items_of(path, InputFormat.JSONL)
    assert [(i.input, i.url) for i in rows] == [
        ('{"url": "http://h.test/1"}', "http://h.test/1"),
        (' {"url": "http://h.test/2"} ', "http://h.test/2"),
    ]


@given(
    st.lists(
        st.sampled_from(
            [
                *(b"a", b"b", b'"', b"\r", b"\n", b"\r\n", sources.BOM, b"\xef", b"\xbb"),
                *(b"\xff\xfe", b"\xfe\xff", b"\x00"),  # UTF-16's marks, and its zero bytes
            ]
        ),
        max_size=40,
    ),
    st.integers(1, 6),  # at most the line limit: a chunk is far shorter than a line may be
)
@example([sources.BOM, b"a" * 7, b"\n"], 1)  # a line one byte past the limit, its end last
@example([b"a" * 6, b"\n", b'"a"' * 3, b"\n"], 4)  # at the limit; past it, with quotes
@example([b"x\n", b"a" * 6, b"\n"], 2)  # at the limit, after a line that ended in a chunk
@example([b"a" * 7, b'"', b'"', b"\n"], 2)  # quotes after the line went long, its end
@example([b"a" * 7, b'"', b'"', b"\n"], 1)  # ... and in chunks with no end of line
@example([b"\xef\xbb"], 1)  # only part of a BOM: a line of its own
@example([sources.BOM], 2)  # a BOM alone: no line
@example([b"\xff\xfe", b"a", b"\x00", b"\n", b"\x00"], 1)  # UTF-16, arriving a byte at a time
def test_chunks_of_any_size_give_the_lines_the_whole_input_gives(
    parts: list[bytes], chunk: int
) -> None:
    """The reader takes its input in chunks (64 KiB; a pipe gives what it has): a line,
    a CRLF, a BOM or an over-long line may be cut anywhere between two reads, and the
    lines handed over must be those of the whole input, the long one's size and quotes
    (what a CSV row needs of it) counted across every piece."""
    content = b"".join(parts)
    max_line = 6
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as directory:
        patch.setattr(sources, "_CHUNK", chunk)
        patch.setattr(sources, "MAX_LINE", max_line)
        patch.setattr(sources, "_SHOWN", 4)  # shorter than a line may be, as in use
        path = Path(directory) / "input"
        path.write_bytes(content)
        if sources._is_utf16(content):
            with pytest.raises(InputError, match="is UTF-16 text"):
                _lines_read_in_chunks(path, chunk)
        else:
            assert _lines_read_in_chunks(path, chunk) == _lines_of_the_whole(content, max_line)


@pytest.mark.parametrize(
    ("text", "request_", "fields", "shown", "message"),
    [
        (
            "..",
            with_url("http://h.test/api/{}"),
            None,
            "..",
            "value makes a '.' or '..' path segment in the template",
        ),
        ("x", NO_TEMPLATE, None, "x", "not an http(s) URL; use --template to expand IDs"),
        ("{}", NO_TEMPLATE, {"id": "1"}, "{}", "row has no url field; use --template"),
        (
            "1",
            with_url("http://h.test/{name}"),
            {"id": "1"},
            "1",
            "row has no field 'name' for the template",
        ),
        (
            "\ud800",
            with_url("http://h.test/{}"),
            None,
            "\\ud800",
            "text holds a lone surrogate (U+D800), which cannot be sent",
        ),
    ],
)
def test_an_input_that_makes_no_url_is_an_item_that_says_why(
    text: str, request_: RequestTemplate, fields: dict[str, str] | None, shown: str, message: str
) -> None:
    """Never an exception: its record, at its place, shows the input and the reason."""
    assert make_item(5, text, request_, fields) == Item(
        5, shown, None, error=FetchError(ErrorKind.INVALID_URL, message)
    )


def test_an_item_with_no_data_template_has_no_body() -> None:
    """``data`` None: no body at all, where an empty one would still be sent."""
    assert make_item(0, "1", with_url("http://h.test/{}")) == Item(
        0, "1", "http://h.test/1", URL("http://h.test/1")
    )


@pytest.mark.parametrize("way", ["a FIFO", "stdin", "a -P worker's descriptor"])
async def test_an_item_is_read_as_soon_as_its_line_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """``tail -f urls | fetchmany``: the first line is an item while its producer goes on
    writing, not once a chunk's worth has come (a buffered read would wait for one,
    and reading stdin whole would wait for its end). The 30 s bound is a failure's,
    never waited when the line arrives."""
    read, write = os.pipe()
    paths, streams = ["-"], None
    if way == "a FIFO":
        os.close(write)
        os.close(read)
        fifo = tmp_path / "urls"
        os.mkfifo(fifo)
        paths = [str(fifo)]
    elif way == "stdin":
        monkeypatch.setattr(sys, "stdin", os.fdopen(read, "r"))
    else:
        streams = {0: read}  # the reader owns it from here
    items = read_items(paths, NO_TEMPLATE, streams=streams)
    first = asyncio.ensure_future(anext(items))
    if way == "a FIFO":  # opened once the reader has opened its end
        write = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    os.write(write, b"http://h.test/1\n")
    try:
        item = await asyncio.wait_for(first, 30)
    finally:
        os.close(write)
    assert item.url == "http://h.test/1"
    assert [i async for i in items] == []
    if way == "stdin":
        sys.stdin.close()


async def test_a_closed_stdin_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fetchmany -t ... <&-``: Python starts with no sys.stdin at all."""
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError) as refused:
        [i async for i in read_items(["-"], NO_TEMPLATE)]
    assert str(refused.value) == "stdin is closed; name an input file, or - with something on stdin"


def test_a_lines_item_is_its_text_stripped_with_undecodable_bytes_kept() -> None:
    assert item_text(b"  a\xffb\t\r\n") == "a\udcffb"  # the byte is sent as it came
    assert item_text(b" # a comment\n") is None
    assert item_text(b" \t\r\n") is None


@pytest.mark.parametrize(
    ("text", "request_"),
    [("http://u:p%40ss@h.test/", NO_TEMPLATE), ("1", with_url("http://u:pw@h.test/{}"))],
)
def test_an_item_whose_url_holds_credentials_says_so(text: str, request_: RequestTemplate) -> None:
    """The client sends such a URL's credentials as curl does (and resume compares such
    items with care): the item tells it, once, as it is made."""
    item = make_item(0, text, request_)
    assert item.target is not None
    assert item.credentials
    assert not make_item(0, "http://h.test/", request_).credentials


def test_a_program_ends_when_its_run_does_while_stdin_is_still_open() -> None:
    """The reader may be blocked reading an idle stdin when the run ends (``| head``
    closed it, or a library caller took what it needed): the program still exits. A
    reader that kept the process alive would hang it until stdin ended, which for
    ``tail -f`` is never. The 30 s bound is a failure's, never waited otherwise."""
    script = """
import asyncio, threading
from fetchmany.input import sources
from fetchmany.input.templates import RequestTemplate

blocked = threading.Event()  # the reader has begun its read of what is not there yet
open_input = sources._open_input

class Watched:
    def __init__(self, stream):
        self.stream, self.reads = stream, 0
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.stream.close()
    def read(self, size):
        self.reads += 1
        if self.reads == 2:
            blocked.set()
        return self.stream.read(size)

sources._open_input = lambda path, fd=None: Watched(open_input(path, fd))

async def main():
    items = sources.read_items(["-"], RequestTemplate())
    print((await anext(items)).url, flush=True)
    await asyncio.to_thread(blocked.wait)
    await items.aclose()

asyncio.run(main())
"""
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as program:
        assert program.stdin is not None
        assert program.stdout is not None
        program.stdin.write(b"http://h.test/1\n")
        program.stdin.flush()
        assert program.stdout.readline() == b"http://h.test/1\n"
        try:
            status = program.wait(timeout=30)  # stdin still open
        except subprocess.TimeoutExpired:
            program.kill()
            status = None
        program.stdin.close()
    assert status == 0
