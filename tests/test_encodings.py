"""Content-Encoding: undone by fetchmany, and a body that cannot be undone is never ``ok``.

aiohttp's own decoding reported a gzip body cut short as an empty ``ok`` body and
passed unknown encodings through as content; these pin the replacement.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Callable

import pytest
from conftest import RawServer, jsonl, raw_response, run_cli

from fetchmany.fetch.encodings import ContentDecodingError, decoded, unsupported

DOC = b'{"title": "' + b"x" * 5000 + b'"}'


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _decode(data: bytes, header: str | None, size: int = 7) -> bytes:
    return b"".join([piece async for piece in decoded(_chunks(data, size), header)])


@pytest.mark.parametrize(
    ("header", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, as some servers send
        ("GZIP ", gzip.compress),
        ("gzip, gzip", lambda d: gzip.compress(gzip.compress(d))),
        ("identity", lambda d: d),
    ],
)
async def test_known_encodings_are_undone_across_any_chunking(
    header: str, encode: Callable[[bytes], bytes]
) -> None:
    encoded = encode(DOC)
    for size in (1, 7, 4096):
        assert await _decode(encoded, header, size) == DOC


async def test_several_gzip_members_are_one_body() -> None:
    assert await _decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip") == b"abcd"


async def test_an_empty_encoded_body_is_empty() -> None:
    assert await _decode(b"", "gzip") == b""


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ("gzip", gzip.compress(DOC)[:-20], "ends before"),
        ("gzip", gzip.compress(DOC)[:10], "ends before"),
        ("deflate", zlib.compress(DOC)[:-9], "ends before"),
        ("gzip", b"not gzip at all", "corrupt"),
        ("deflate", zlib.compress(b"a") + b"trailing", "after its end"),
    ],
)
async def test_a_broken_stream_raises_instead_of_passing_as_a_body(
    header: str, data: bytes, message: str
) -> None:
    with pytest.raises(ContentDecodingError, match=message):
        await _decode(data, header)


def test_unknown_encodings_are_known_before_reading() -> None:
    assert unsupported("br") is not None
    assert unsupported("gzip, compress") is not None
    assert unsupported("gzip") is None
    assert unsupported(None) is None
    assert unsupported("identity") is None


async def test_a_small_body_that_inflates_hugely_comes_out_in_bounded_pieces() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    pieces = decoded(_chunks(bomb, len(bomb)), "gzip")
    first = await anext(pieces)
    assert 0 < len(first) <= 64 * 1024
    await pieces.aclose()


def test_records_for_broken_unknown_and_good_encodings(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    json_type = b"Content-Type: application/json"
    server = raw_server(
        {
            "/cut": raw_response(gzip.compress(DOC)[:-20], (json_type, b"Content-Encoding: gzip")),
            "/br": raw_response(b"\x8b\x00\x80abc", (json_type, b"Content-Encoding: br")),
            "/good": raw_response(gzip.compress(DOC), (json_type, b"Content-Encoding: gzip")),
        }
    )
    urls = "".join(server.url(p) + "\n" for p in ("/cut", "/br", "/good"))
    result = run_cli("-q", "--retries", "0", stdin=urls.encode())
    cut, brotli, good = jsonl(result.stdout)
    assert result.returncode == 1
    assert (cut["ok"], cut["error"]["kind"]) == (False, "protocol")
    assert "ends before" in cut["error"]["message"]
    assert (brotli["ok"], brotli["status"], brotli["error"]["kind"]) == (False, 200, "protocol")
    assert brotli["body"] == "iwCAYWJj"  # the bytes as sent, base64: not text, not JSON
    assert brotli["attempts"] == 1  # what cannot be undone is not asked again
    assert good["ok"] is True
    assert good["body"] == {"title": "x" * 5000}


def test_codings_in_several_header_fields_are_one_list(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    text = b"Content-Type: text/plain"
    twice = gzip.compress(gzip.compress(b"hello"))
    server = raw_server(
        {
            "/two": raw_response(
                twice, (text, b"Content-Encoding: gzip", b"Content-Encoding: gzip")
            ),
            "/id": raw_response(
                gzip.compress(b"hello"),
                (text, b"Content-Encoding: identity", b"Content-Encoding: gzip"),
            ),
        }
    )
    result = run_cli("-q", stdin=f"{server.url('/two')}\n{server.url('/id')}\n".encode())
    assert [r["body"] for r in jsonl(result.stdout)] == ["hello", "hello"]
