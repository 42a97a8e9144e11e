"""Where items come from: lazy line reading, template expansion and URL validation.

Input is read in bounded chunks by a background thread so that a slow producer on
stdin (``tail -f``, a paging API script) never blocks the event loop and in-flight
requests keep moving, and so that a ten-million-line file is never held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from typing import BinaryIO, Final

from yarl import URL

from fetchmany.input.rows import CsvRows, InputError, InputFormat, Row, json_field, jsonl_row
from fetchmany.input.templates import LoneSurrogate, MissingField, RequestTemplate, encode_text
from fetchmany.records import ErrorKind, FetchError, valid_text
from fetchmany.redaction import redact_url, redact_valid
from fetchmany.urls import NotSendable, has_credentials, parsed_as_it_stands, sendable
from fetchmany.urls import parsed as as_url

STDIN: Final = "-"
_CHUNK: Final = 64 * 1024
_QUEUED_CHUNKS: Final = 8
MAX_LINE: Final = 16 * 1024 * 1024
"""The longest input line read as an item; a longer one becomes an invalid record, and
memory stays bounded whatever the input (a 3 GB file with no newline)."""
_SHOWN: Final = 200  # bytes of an over-long line kept to show in its record


class LongLine(bytes):
    """What stands for a line longer than ``MAX_LINE``: its first bytes, its size, and
    how many double quotes it held (what a CSV row it sits in needs of it)."""

    size: int
    quotes: int

    @classmethod
    def of(cls, start: bytes, size: int, quotes: int) -> LongLine:
        line = cls(start[:_SHOWN])
        line.size = size
        line.quotes = quotes
        return line

    def problem(self) -> str:
        return f"line of {self.size:,} bytes, longer than an item may be ({MAX_LINE:,} bytes)"


_URL_SCHEME: Final = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Shard:
    """``--shard K/N``: the items whose index mod ``count`` is ``number``; with
    ``--shard-by host`` (``by_host``), the items whose host hashes to ``number``, so
    that each host's every item is in one shard and its limits hold for the whole job
    however many machines run it. An item without a URL (an invalid one) goes by its
    index."""

    number: int
    count: int
    by_host: bool = False

    @classmethod
    def parse(cls, text: str) -> Shard:
        number, _, count = text.strip().partition("/")
        try:  # with no slash, count is "" and fails here
            shard = cls(int(number), int(count))
        except ValueError:
            raise ValueError(f"expected K/N such as 0/4, got {text!r}") from None
        if shard.count < 1 or not 0 <= shard.number < shard.count:
            raise ValueError(f"expected K/N with 0 <= K < N, got {text!r}")
        return shard

    def holds(self, index: int) -> bool:
        """Whether the item at ``index`` is this shard's (by index only)."""
        return index % self.count == self.number

    def holds_item(self, item: Item) -> bool:
        if self.by_host and item.target is not None:
            return host_shard(item.target, self.count) == self.number
        return item.index % self.count == self.number

    def size(self, total: int) -> int:
        """How many of ``total`` items fall in this shard, by index (by host, that is
        known only as each item is read)."""
        assert not self.by_host
        return max(0, (total - self.number + self.count - 1) // self.count)


def host_shard(target: URL, count: int) -> int:
    """The shard of ``target``'s origin (scheme, host, port) among ``count``: a stable
    hash (the same on every machine and Python, unlike ``hash()``), so that N machines
    given the same list agree on it without talking to each other."""
    host = (target.raw_host or "").lower()
    origin = f"{target.scheme.lower()}://{host}:{target.port}".encode()
    digest = hashlib.blake2b(origin, digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(slots=True)
class Item:
    """One unit of work: its position, the text as given, a URL or why there is none,
    its request body (from ``-d``/``--json``) and its fields (for ``--save-name``).

    Never changed once made; not frozen only because a frozen dataclass costs three
    times as much to make, and one is made per input line. ``target`` comes fourth so
    that the common line's item is made with no keyword (each costs as much again as
    the field's store)."""

    index: int
    input: str
    url: str | None
    target: URL | None = None
    """``url`` parsed, for the request."""
    error: FetchError | None = None
    data: bytes | None = None
    fields: Mapping[str, str] | None = None
    credentials: bool = False
    """Whether ``target`` has a userinfo (``has_credentials``): told once, when the item
    is read, since every request and every record asks."""


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_NOT_IN_HOST: Final = re.compile(r"[\x00-\x20\x7f]")
_DOT_SEGMENT: Final = re.compile(r"/\.{1,2}(?=[/?#]|$)")


def parse_url(url: str) -> tuple[str, URL] | str:
    """The URL as sent (``fetchmany.urls.sendable``: as given, what cannot stand in a
    URL escaped) and parsed, or why ``url`` cannot be fetched.

    The parsed object travels with the item to aiohttp, so each URL is parsed once.
    Control characters are refused rather than silently dropped or encoded on the
    wire (yarl strips tabs and newlines), so a record's ``url`` is what was sent.
    """
    # Most lines are an http(s) URL fit to send as it stands: ASCII that each part
    # allows, no userinfo, its host a valid name; split and built in one pass.
    if (fit := parsed_as_it_stands(url)) is not None:
        return url, fit
    if (control := _CONTROL.search(url)) is not None:
        return f"URL contains a control character ({valid_text(repr(control.group()))})"
    if not url.isascii():
        try:
            encode_text(url)
        except LoneSurrogate as exc:  # no byte to send for it
            return str(exc)
    try:
        sent = sendable(url)
    except NotSendable as exc:
        return f"host is not a valid internationalised name: {valid_text(str(exc))}"
    try:
        parsed = as_url(sent)
        scheme, raw_host = parsed.scheme, parsed.raw_host
    except (ValueError, TypeError) as exc:
        return f"not a valid URL: {valid_text(str(exc))}"
    if scheme not in ("http", "https"):
        return "only http and https URLs are fetched"
    try:
        host = parsed.host  # decoded lazily: an invalid IDNA label raises only here
    except UnicodeError:
        return f"host is not a valid internationalised name: {valid_text(raw_host or '')}"
    if not host:
        return "URL has no host"
    if _NOT_IN_HOST.search(raw_host or ""):  # "a b"
        return f"host {valid_text(repr(raw_host))} holds a space or control character"
    if parsed.raw_user is not None and ":" in (parsed.user or ""):
        # Basic auth joins user and password with ':' (RFC 7617): it cannot be sent.
        return "the user name holds ':' (%3A), which Basic auth cannot send; put it in the password"
    return sent, parsed


def display_text(text: str) -> str:
    """The input as it goes into records: valid UTF-8, undecodable bytes shown as ``\\xNN``."""
    return valid_text(text)


def _invalid(index: int, shown: str, url: str | None, message: str) -> Item:
    return Item(index, shown, url, error=FetchError(ErrorKind.INVALID_URL, message))


def make_item(
    index: int,
    text: str,
    request: RequestTemplate,
    fields: Mapping[str, str] | None = None,
) -> Item:
    """Classify one input and fill its templates. Never raises: an unusable input
    becomes an item carrying an ``invalid_url`` error, so it still gets its record.

    ``fields`` is None for a plain line (``{}``/``{id}`` are the line, and a line
    that is itself an http(s) URL is used as it is), or a row's columns.
    """
    if fields is None and request.data is None and (fit := parsed_as_it_stands(text)) is not None:
        # The common line: an http(s) URL fit to send as it stands, what the steps
        # below make of it in one step. It is ASCII, so shown as given, and has no
        # userinfo: only a URL nested in its query (after an @) can hold credentials.
        return Item(index, text, redact_valid(text) if "@" in text else text, fit)
    shown = text if text.isascii() else display_text(text)  # ASCII: nothing to encode
    values: Mapping[str, str] = {"": text, "id": text} if fields is None else fields
    try:
        if fields is None and _URL_SCHEME.match(text):
            url = text
        elif request.url is not None:
            url = request.url.expand(values)
            if _DOT_SEGMENT.search(url) and not _DOT_SEGMENT.search(request.url.template):
                # An ID of "." or ".." would be resolved away (to /api/ or /), silently
                # fetching another resource than the template names.
                return _invalid(
                    index, shown, None, "value makes a '.' or '..' path segment in the template"
                )
        elif fields is not None and "url" in fields:
            url = fields["url"]
        elif fields is None:
            return _invalid(index, shown, None, "not an http(s) URL; use --template to expand IDs")
        else:
            return _invalid(index, shown, None, "row has no url field; use --template")
        data = None
        if request.data is not None:
            data = encode_text(request.data.expand(values))
    except MissingField as missing:
        return _invalid(index, shown, None, f"row has no field {missing.name!r} for the template")
    except LoneSurrogate as exc:
        return _invalid(index, shown, None, str(exc))
    parsed = parse_url(url)
    if isinstance(parsed, str):
        return _invalid(index, shown, redact_url(display_text(url)), parsed)
    sent, target = parsed
    # The URL as sent (as given, unless a character had to be escaped), credentials masked.
    return Item(
        index,
        shown,
        redact_valid(sent),
        data=data,
        fields=fields,
        target=target,
        credentials=has_credentials(target),
    )


def item_text(raw: bytes) -> str | None:
    """The item a raw input line holds, or ``None`` for blank and ``#`` comment lines."""
    stripped = raw.strip()
    if not _is_item(stripped):
        return None
    return stripped.decode("utf-8", "surrogateescape")


def _is_item(stripped: bytes) -> bool:
    return bool(stripped) and not stripped.startswith(b"#")


def _open_input(path: str, fd: int | None = None) -> BinaryIO:
    """Unbuffered, so a read returns what a pipe has now instead of waiting for a full chunk.
    ``fd``: the input is already open there (a ``-P`` worker's copy of a pipe)."""
    if fd is not None:
        return open(fd, "rb", buffering=0)
    if path != STDIN:
        return open(path, "rb", buffering=0)
    if sys.stdin is None:  # started with stdin closed (<&-)
        raise InputError("stdin is closed; name an input file, or - with something on stdin")
    try:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    except (AttributeError, OSError, ValueError):  # a stand-in stdin with no descriptor
        return io.BytesIO(sys.stdin.buffer.read())


class InputUnreadable(Exception):
    """An input that fails while being read (a disk error, a file removed under us):
    the run cannot go on without losing items, so it ends with this one line."""


def _name(path: str) -> str:
    return "stdin" if path == STDIN else path


class LineFeed:
    """Lines of one input, read by a daemon thread in chunks, handed to the loop.

    At most ``_QUEUED_CHUNKS`` chunks wait at once, so memory is bounded whatever
    the input size. The thread is a daemon: a read blocked on an idle stdin must
    not keep the process alive after the run has ended.
    """

    def __init__(self, path: str, *, cr_ends_lines: bool = True, fd: int | None = None) -> None:
        self._path = path
        self._cr_ends_lines = cr_ends_lines
        self._fd = fd  # the input is already open there
        self._queue: asyncio.Queue[list[bytes] | BaseException | None] = asyncio.Queue()
        self._credits = threading.Semaphore(_QUEUED_CHUNKS)
        self._stopped = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="fetchmany-reader", daemon=True)
        self._thread.start()

    def _hand_over(self, item: list[bytes] | BaseException | None) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            return False
        return True

    def _run(self) -> None:
        try:
            path = self._path
            try:
                with _open_input(path, self._fd) as stream:
                    if not self._read(stream, path):
                        return
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise InputUnreadable(f"cannot read {_name(path)}: {reason}") from None
            self._hand_over(None)
        except BaseException as exc:  # handed to the loop, which raises it in context
            self._hand_over(exc)

    def _read(self, stream: BinaryIO, path: str) -> bool:
        """Hand over the lines of one input; False once nobody is listening.

        A line spanning chunks is kept in pieces and joined once, when its end arrives
        (joining at every chunk would be quadratic in its length); past ``MAX_LINE`` it
        is dropped to its end and handed over as a ``LongLine``."""
        pieces: list[bytes] = []  # the unfinished line
        held = 0
        long: LongLine | None = None  # an over-long line, being skipped to its end
        at_start = True
        while True:
            self._credits.acquire()
            if self._stopped.is_set():
                return False
            data = stream.read(_CHUNK)
            ended = not data
            if ended and not (at_start and pieces):
                self._credits.release()
                break
            if at_start:  # an input shorter than _SNIFFED is judged when it ends
                data = b"".join(pieces) + data
                pieces, held = [], 0
                if len(data) < _SNIFFED and not ended:  # a BOM or UTF-16's mark may be arriving
                    pieces, held = [data], len(data)
                    self._credits.release()
                    continue
                data = _without_bom(data, path)
                at_start = False
            if self._cr_ends_lines and b"\r" in data:
                # A lone CR ends a line too (classic Mac files). A CRLF split across two
                # chunks gives an extra blank line, and blank lines are skipped.
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines: list[bytes] = data.split(b"\n")
            last = lines.pop()
            if lines:  # the unfinished line ends in this chunk
                if long is not None:
                    long.size += len(lines[0])
                    long.quotes += lines[0].count(b'"')
                    lines[0], long = long, None
                elif pieces:
                    lines[0] = b"".join((*pieces, lines[0]))
                    if len(lines[0]) > MAX_LINE:
                        lines[0] = LongLine.of(lines[0], len(lines[0]), lines[0].count(b'"'))
                pieces, held = [], 0
            if long is not None:
                long.size += len(last)
                long.quotes += last.count(b'"')
            elif last:
                pieces.append(last)
                held += len(last)
                if held > MAX_LINE:
                    quotes = sum(piece.count(b'"') for piece in pieces)
                    long = LongLine.of(b"".join(pieces)[:_SHOWN], held, quotes)
                    pieces, held = [], 0
            if not self._hand_over(lines):
                return False
            if ended:
                break
        if long is not None:
            return self._hand_over([long])
        rest = b"".join(pieces)
        return not rest or self._hand_over([rest])

    async def batches(self) -> AsyncGenerator[list[bytes], None]:
        """Lines in the batches the reader handed over (one await per chunk, not per line)."""
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            if isinstance(batch, BaseException):
                raise batch
            self._credits.release()
            yield batch

    async def lines(self) -> AsyncGenerator[bytes, None]:
        async for batch in self.batches():
            for line in batch:
                yield line

    def close(self) -> None:
        self._stopped.set()
        self._credits.release()


BOM: Final = b"\xef\xbb\xbf"
_SNIFFED: Final = 4
"""Bytes an input's start is judged on (``_without_bom``): a UTF-8 BOM is three, and
UTF-16 is told by its two-byte mark and the zero byte of the character after it. A pipe
may hand them over a byte at a time."""


def _is_utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark followed by a character with a zero byte (ASCII text)."""
    little = data.startswith(b"\xff\xfe") and data[3:4] == b"\x00"
    return little or (data.startswith(b"\xfe\xff") and data[2:3] == b"\x00")


def _without_bom(data: bytes, path: str) -> bytes:
    """The start of an input without its UTF-8 byte-order mark (spreadsheets write one).

    UTF-16 text (a spreadsheet's "Unicode text") would turn every line into garbage
    items; it is refused with a way out instead.
    """
    if _is_utf16(data):
        raise InputError(f"{_name(path)} is UTF-16 text; convert it: iconv -f UTF-16 -t UTF-8")
    return data.removeprefix(BOM)


def _rows_of(
    batch: list[bytes], input_format: InputFormat, csv_rows: CsvRows | None
) -> list[Row] | list[str]:
    """The rows a batch of raw lines completes (a CSV row may wait for a later line);
    for the common batch of short lines, each line's text (``item_text``'s), as the
    row it stands for (``Row(text, None)``) would only be unpacked again."""
    if input_format is InputFormat.LINES and LongLine not in map(type, batch):
        # One item a line (none for blanks and comments): item_text's, by its own rule.
        return [
            stripped.decode("utf-8", "surrogateescape")
            for raw in batch
            if _is_item(stripped := raw.strip())
        ]
    rows: list[Row] = []
    for raw in batch:
        if isinstance(raw, LongLine):
            start = raw.decode("utf-8", "surrogateescape")
            if csv_rows is None and raw.lstrip().startswith(b"#"):
                continue  # a comment, however long
            if csv_rows is None:
                rows.append(Row(start + "...", None, raw.problem()))
            elif (row := csv_rows.feed_long(start, raw.size, raw.quotes)) is not None:
                rows.append(row)  # one record for the row the line was in
            continue
        if input_format is InputFormat.LINES:
            text = item_text(raw)
            if text is not None:
                rows.append(Row(text, None))
            continue
        if csv_rows is not None:
            # The CR stays: inside a quoted cell a CRLF is the cell's (CsvRows drops the
            # one that ends the row).
            row = csv_rows.feed(raw.decode("utf-8", "surrogateescape"))
            if row is not None:
                rows.append(row)
        elif _is_item(raw.strip()):  # ASCII blanks only, as counted: a line of NBSP is data
            # No CR to drop: outside CSV, the reader ends lines at CRs.
            rows.append(jsonl_row(raw.decode("utf-8", "surrogateescape")))
    return rows


CHUNK_ITEMS: Final = 256
"""The most items ``read_item_chunks`` makes at once: a chunk of short lines (IDs for a
template) holds thousands, and an item costs about 1 KB until it is fetched."""


async def read_item_chunks(
    paths: Sequence[str],
    request: RequestTemplate,
    input_format: InputFormat = InputFormat.LINES,
    shard: Shard | None = None,
    streams: Mapping[int, int] | None = None,
) -> AsyncGenerator[list[Item], None]:
    """Items of files (``-`` is stdin) in order, indexed from 0, in chunks of at most
    ``CHUNK_ITEMS`` (what one read of the input completes); blank lines (and for line
    input, ``#`` comments) skipped; each CSV file brings its own header. With
    ``shard``, only its items, keeping their index in the whole input (the others
    are counted, not parsed). ``streams``: inputs, by position, already open on a
    descriptor (a ``-P`` worker reads its copy of a pipe there, under the pipe's name).

    One generator over whole batches of lines, resumed once a chunk: the per-line work
    is plain calls, and the engine takes a chunk's items without an await each.
    """
    index = 0
    lines = input_format is InputFormat.LINES
    by_host = shard is not None and shard.by_host
    # By index, the items of other shards are counted, not parsed; by host, each is
    # parsed (its host decides) and then kept or dropped.
    skip = shard.count if shard is not None and not by_host else 1
    mine = shard.number if shard is not None else 0
    if by_host:
        assert shard is not None
        every = read_item_chunks(paths, request, input_format, None, streams)
        async with aclosing(every) as chunks:
            async for whole in chunks:
                if kept := [item for item in whole if shard.holds_item(item)]:
                    yield kept
        return
    for position, path in enumerate(paths or [STDIN]):
        # CSV keeps CRs: a quoted cell may hold one, and its rows end in CRLF anyway.
        feed = LineFeed(
            path,
            cr_ends_lines=input_format is not InputFormat.CSV,
            fd=streams.get(position) if streams else None,
        )
        csv_rows = CsvRows(MAX_LINE) if input_format is InputFormat.CSV else None
        try:
            async for batch in feed.batches():
                chunk: list[Item] = []
                for row in _rows_of(batch, input_format, csv_rows):
                    if skip > 1 and index % skip != mine:
                        index += 1
                        continue
                    if isinstance(row, str):
                        chunk.append(make_item(index, row, request))
                    elif row.problem is not None:
                        chunk.append(_invalid(index, display_text(row.text), None, row.problem))
                    elif lines:
                        chunk.append(make_item(index, row.text, request))
                    else:
                        chunk.append(make_item(index, row.text, request, row.fields or {}))
                    index += 1
                    if len(chunk) == CHUNK_ITEMS:
                        yield chunk
                        chunk = []
                if chunk:
                    yield chunk
            if csv_rows is not None and (last := csv_rows.finish()) is not None:
                # Only a row the file ends inside (a quote never closed) is left: wrong.
                assert last.problem is not None
                if skip == 1 or index % skip == mine:
                    yield [_invalid(index, display_text(last.text), None, last.problem)]
                index += 1
        except InputError as exc:
            exc.later = position > 0
            raise
        finally:
            feed.close()


def read_items(
    paths: Sequence[str],
    request: RequestTemplate,
    input_format: InputFormat = InputFormat.LINES,
    shard: Shard | None = None,
    streams: Mapping[int, int] | None = None,
) -> AsyncGenerator[Item, None]:
    """``read_item_chunks``' items one by one, for a consumer that takes them singly."""
    return flatten(read_item_chunks(paths, request, input_format, shard, streams))


async def flatten(chunks: AsyncIterable[Sequence[Item]]) -> AsyncGenerator[Item, None]:
    """Chunks of items as single items, for a step that takes them one by one
    (--resume's check, --refresh's join); the chunks' source is closed with it."""
    try:
        async for chunk in chunks:
            for item in chunk:
                yield item
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()


async def one_by_one(items: AsyncIterable[Item]) -> AsyncGenerator[Sequence[Item], None]:
    """A per-item source as chunks of one: read item by item, as lazily as it is."""
    async for item in items:
        yield (item,)


LIBRARY_CHUNK: Final = 64
"""The most values ``item_chunks_from`` takes at once from a plain iterable: an iterable
is taken in small steps, as the engine needs items, and never read far ahead."""
LIBRARY_CHUNK_SECONDS: Final = 0.01
"""The longest ``item_chunks_from`` keeps taking a plain iterable's values into one chunk:
the iterable runs in the event loop, so a slow one (a paging API behind a generator)
would hold the fetches in flight, and its first value unfetched, for a whole chunk of
its values. A fast iterable fills a chunk in a fraction of this."""


def items_from(
    values: Iterable[str | Mapping[str, str]] | AsyncIterable[str | Mapping[str, str]],
    request: RequestTemplate,
) -> AsyncGenerator[Item, None]:
    """``item_chunks_from``'s items one by one."""
    return flatten(item_chunks_from(values, request))


async def item_chunks_from(
    values: Iterable[str | Mapping[str, str]] | AsyncIterable[str | Mapping[str, str]],
    request: RequestTemplate,
) -> AsyncGenerator[Sequence[Item], None]:
    """Items for the library API: every value given is one item, nothing is skipped.
    A string is a URL or an ID; a mapping is a row whose fields fill the templates.

    In chunks, as the engine takes them: up to ``LIBRARY_CHUNK`` values of a plain
    iterable at a time (the engine takes a chunk's items without an await each), fewer
    when they are slow coming (``LIBRARY_CHUNK_SECONDS``), one at a time from an async
    iterable (whose next value may be a while coming)."""

    def make(index: int, value: object) -> Item:
        try:
            return make_value(index, value)
        except (ValueError, TypeError, RecursionError) as exc:  # no text can be made of it
            shown = valid_text(f"{type(value).__name__} value")
            return _invalid(index, shown, None, f"cannot be read as an item: {exc}")

    def make_value(index: int, value: object) -> Item:
        if isinstance(value, Mapping):
            # As a JSON Lines row is read: numbers and lists as JSON text, None as missing.
            fields = {str(k): text for k, v in value.items() if (text := json_field(v)) is not None}
            shown = json.dumps(dict(value), ensure_ascii=False, default=str)
            return make_item(index, shown, request, fields)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        elif not isinstance(value, str):
            value = json_field(value) or ""  # an int ID is its digits, None an empty item
        if not value.strip():
            return _invalid(index, value, None, "empty item")
        return make_item(index, value, request)

    index = 0
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield (make(index, value),)
            index += 1
        return
    chunk: list[Item] = []
    began = time.perf_counter()
    try:
        for value in values:
            chunk.append(make(index, value))
            index += 1
            if len(chunk) == LIBRARY_CHUNK or time.perf_counter() - began > LIBRARY_CHUNK_SECONDS:
                yield chunk
                chunk = []
                began = time.perf_counter()
    except Exception:
        # The iterable raised: the values it gave before are items all the same, so the
        # chunk not yet full goes out before the error does.
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


def count_items(
    path: str,
    stop: threading.Event | None = None,
    input_format: InputFormat = InputFormat.LINES,
) -> int | None:
    """How many items a regular file holds (for the progress total), or ``None`` if unknown.

    Streams the file; gives up (``None``) when ``stop`` is set or the input is not a
    regular file, since counting stdin would consume it.
    """
    if path == STDIN or not os.path.isfile(path):
        return None
    count = 0
    comments = input_format is not InputFormat.CSV  # CSV rows are data, # or not
    # The first byte that is not blank of the line being read (None: blank so far): all
    # a line is needed for, so a line of any length costs a chunk at most.
    first: bytes | None = None
    blanks = None if comments else b"\r"  # a CSV line of spaces is a row (of data)
    with open(path, "rb") as stream:
        for n, chunk in enumerate(iter(lambda: stream.read(_CHUNK), b"")):
            if n == 0:
                chunk = chunk.removeprefix(BOM)
            if comments and b"\r" in chunk:  # lone CRs end lines, as the reader splits
                chunk = chunk.replace(b"\r", b"\n")
            *ended, last = chunk.split(b"\n")
            for line in ended:
                if first is None:
                    first = line.lstrip(blanks)[:1] or None
                if first is not None and not (comments and first == b"#"):
                    count += 1
                first = None
            if first is None:
                first = last.lstrip(blanks)[:1] or None
            if stop is not None and n % 64 == 0 and stop.is_set():
                return None
    if first is not None and not (comments and first == b"#"):
        count += 1  # the last line, without its newline
    if input_format is InputFormat.CSV and count:
        count -= 1  # the header (a row spanning lines makes this an estimate)
    return count
