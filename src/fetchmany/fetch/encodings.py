"""Content-Encoding, decoded here rather than by aiohttp, so that a bad one is a record.

aiohttp's own decompression reports a gzip stream cut short as a shorter (often
empty) body with no error, and passes an encoding it does not know through as if
it were the content: both would be ``ok`` records holding the wrong bytes. Here a
stream that ends before its compressed end, or an encoding we cannot undo, raises
``ContentDecodingError`` and becomes a ``protocol`` record. Output is produced in
bounded pieces, so a small body that inflates enormously is cut at the size cap
instead of being inflated whole.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

ACCEPT_ENCODING: Final = "gzip, deflate"
"""What we ask for: exactly the encodings this module undoes."""

_PIECE: Final = 64 * 1024
_IDENTITY: Final = frozenset({"", "identity"})


class ContentDecodingError(Exception):
    """A body whose Content-Encoding cannot be undone: unknown, corrupt or cut short."""


class _Inflater:
    """One zlib stream (gzip, zlib-wrapped or raw deflate), several gzip members in a row."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stream: zlib._Decompress | None = None
        self._head = b""  # deflate's first bytes, until there are two to tell its kind by

    def _open(self, head: bytes) -> zlib._Decompress:
        if self._name == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is zlib-wrapped by the RFC but raw in some servers (as browsers accept).
        wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._stream is None and self._name == "deflate" and len(self._head + data) < 2:
            self._head += data
            return
        data, self._head = self._head + data, b""
        while data:
            if self._stream is None or self._stream.eof:
                if self._stream is not None and self._name != "gzip":
                    raise ContentDecodingError(f"{self._name} body has data after its end")
                self._stream = self._open(data)
            try:
                piece = self._stream.decompress(data, _PIECE)
                while True:
                    if piece:
                        yield piece
                    if not self._stream.unconsumed_tail:
                        break
                    piece = self._stream.decompress(self._stream.unconsumed_tail, _PIECE)
            except zlib.error as exc:
                raise ContentDecodingError(f"{self._name} body is corrupt: {exc}") from None
            data = self._stream.unused_data if self._stream.eof else b""

    def finish(self) -> bytes:
        if self._stream is None:
            if self._head:
                raise ContentDecodingError(f"{self._name} body ends before its compressed end")
            return b""  # an empty body: nothing was encoded
        try:
            rest = self._stream.flush()
        except zlib.error as exc:
            raise ContentDecodingError(f"{self._name} body is corrupt: {exc}") from None
        if not self._stream.eof:
            raise ContentDecodingError(f"{self._name} body ends before its compressed end")
        return rest


def _decoders(header: str) -> list[_Inflater]:
    """The decoders to apply, last-applied encoding first (RFC 9110 8.4)."""
    names = [name.strip().lower() for name in header.split(",")]
    decoders = []
    for name in reversed(names):
        if name in _IDENTITY:
            continue
        if name in ("gzip", "x-gzip"):
            decoders.append(_Inflater("gzip"))
        elif name == "deflate":
            decoders.append(_Inflater("deflate"))
        else:
            raise ContentDecodingError(f"Content-Encoding {name!r} is not supported")
    return decoders


def is_encoded(header: str | None) -> bool:
    return header is not None and header.strip().lower() not in _IDENTITY


def unsupported(header: str | None) -> str | None:
    """Why ``header``'s encoding cannot be undone, or None when it can (or there is none).

    Known before the body is read, so such a body is kept as sent, not retried.
    """
    if not is_encoded(header):
        return None
    assert header is not None
    try:
        _decoders(header)
    except ContentDecodingError as exc:
        return f"{exc}; body kept as sent"
    return None


async def decoded(chunks: AsyncIterator[bytes], header: str | None) -> AsyncIterator[bytes]:
    """The body ``chunks`` carry, with ``header``'s encodings undone, in bounded pieces."""
    if not is_encoded(header):
        async for chunk in chunks:
            yield chunk
        return
    assert header is not None
    decoders = _decoders(header)
    async for chunk in chunks:
        for piece in _through(decoders, chunk):
            yield piece
    for i, decoder in enumerate(decoders):  # each end feeds the decoders after it
        for piece in _through(decoders[i + 1 :], decoder.finish()):
            yield piece


def _through(decoders: list[_Inflater], data: bytes) -> Iterator[bytes]:
    if not decoders:
        if data:
            yield data
        return
    first, rest = decoders[0], decoders[1:]
    for piece in first.feed(data):
        yield from _through(rest, piece)
