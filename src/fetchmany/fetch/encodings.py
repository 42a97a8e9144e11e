"""Content-Encoding, decoded here rather than by aiohttp, so that a bad one is a record.

aiohttp's own decompression reports a gzip stream cut short as a shorter (often
empty) body with no error, and passes an encoding it does not know through as if
it were the content: both would be ``ok`` records holding the wrong bytes. Here a
stream that ends before its compressed end, or an encoding we cannot undo, raises
``ContentDecodingError`` and becomes a ``protocol`` record. Output is produced in
bounded pieces, so a small body that inflates enormously is cut at the size cap
instead of being inflated whole.

gzip and deflate are zlib's; br (RFC 7932) and zstd (RFC 8878) use the packages
aiohttp itself decodes them with (Brotli or brotlicffi, and the standard library's
``compression.zstd`` or its backport), with the same guarantees: cut short is an
error, output in bounded pieces. A zstd frame may ask for a window of up to 8 MB
(RFC 9659 3), so a hostile one cannot make each request hold gigabytes.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from importlib.util import find_spec
from typing import Any, Final, Protocol

_PIECE: Final = 64 * 1024
_IDENTITY: Final = frozenset({"", "identity"})
_ZSTD_WINDOW_LOG: Final = 23  # 8 MB: RFC 9659 3, as browsers decode zstd


def _available(*modules: str) -> bool:
    """Whether any of ``modules`` can be imported, without importing it (a run that
    meets no br body never pays for brotli)."""
    for module in modules:
        try:
            if find_spec(module) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


_BROTLI: Final = ("brotli", "brotlicffi")
_ZSTD: Final = ("compression.zstd",) if sys.version_info >= (3, 14) else ("backports.zstd",)
HAS_BROTLI: Final = _available(*_BROTLI)
HAS_ZSTD: Final = _available(*_ZSTD)

ACCEPT_ENCODING: Final = ", ".join(
    ["gzip", "deflate", *(["br"] if HAS_BROTLI else []), *(["zstd"] if HAS_ZSTD else [])]
)
"""What we ask for: exactly the encodings this module undoes here."""


class ContentDecodingError(Exception):
    """A body whose Content-Encoding cannot be undone: unknown, corrupt or cut short."""


class _Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> bytes: ...


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


class _Brotli:
    """One brotli stream (RFC 7932); output in pieces of about ``_PIECE`` (the library
    stops growing its buffer once past the limit)."""

    def __init__(self) -> None:
        try:
            import brotli
        except ImportError:
            import brotlicffi as brotli
        self._error: type[Exception] = brotli.error
        self._stream: Any = brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        if self._stream.is_finished():
            raise ContentDecodingError("br body has data after its end")
        self._fed = True
        try:
            # Output held back by the limit comes with empty input, until there is none.
            piece = self._stream.process(data, output_buffer_limit=_PIECE)
            while piece:
                yield piece
                piece = self._stream.process(b"", output_buffer_limit=_PIECE)
        except self._error as exc:
            raise ContentDecodingError(f"br body is corrupt: {exc}") from None

    def finish(self) -> bytes:
        if self._fed and not self._stream.is_finished():
            raise ContentDecodingError("br body ends before its compressed end")
        return b""


class _Zstd:
    """zstd frames (RFC 8878), one after another as a stream may hold them; output in
    pieces of at most ``_PIECE``; a frame's window at most 8 MB."""

    def __init__(self) -> None:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
        self._zstd: Any = zstd
        self._stream: Any = None

    def _open(self) -> Any:
        zstd = self._zstd
        return zstd.ZstdDecompressor(
            options={zstd.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG}
        )

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                if self._stream is None or self._stream.eof:
                    self._stream = self._open()
                piece = self._stream.decompress(data, _PIECE)
                while True:
                    if piece:
                        yield piece
                    if self._stream.eof or self._stream.needs_input:
                        break
                    piece = self._stream.decompress(b"", _PIECE)
                data = self._stream.unused_data if self._stream.eof else b""
        except self._zstd.ZstdError as exc:
            raise ContentDecodingError(f"zstd body is corrupt: {exc}") from None

    def finish(self) -> bytes:
        if self._stream is not None and not self._stream.eof:
            raise ContentDecodingError("zstd body ends before its compressed end")
        return b""


def _decoders(header: str) -> list[_Decoder]:
    """The decoders to apply, last-applied encoding first (RFC 9110 8.4)."""
    names = [name.strip().lower() for name in header.split(",")]
    decoders: list[_Decoder] = []
    for name in reversed(names):
        if name in _IDENTITY:
            continue
        if name in ("gzip", "x-gzip"):
            decoders.append(_Inflater("gzip"))
        elif name == "deflate":
            decoders.append(_Inflater("deflate"))
        elif name == "br" and HAS_BROTLI:
            decoders.append(_Brotli())
        elif name == "zstd" and HAS_ZSTD:
            decoders.append(_Zstd())
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


def _through(decoders: list[_Decoder], data: bytes) -> Iterator[bytes]:
    if not decoders:
        if data:
            yield data
        return
    first, rest = decoders[0], decoders[1:]
    for piece in first.feed(data):
        yield from _through(rest, piece)
