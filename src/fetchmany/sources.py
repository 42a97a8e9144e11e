"""Where items come from: lazy line reading, template expansion and URL validation.

Input is read in bounded chunks by a background thread so that a slow producer on
stdin (``tail -f``, a paging API script) never blocks the event loop and in-flight
requests keep moving, and so that a ten-million-line file is never held in memory.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final
from urllib.parse import quote

from fetchmany.records import ErrorKind, FetchError

STDIN: Final = "-"
_CHUNK: Final = 64 * 1024
_QUEUED_CHUNKS: Final = 8
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)?\}")
_URL_SCHEME: Final = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Item:
    """One unit of work: its position, the text as given, and a URL or why there is none."""

    index: int
    input: str
    url: str | None
    error: FetchError | None = None


class TemplateError(ValueError):
    """A template the user gave cannot expand anything."""


class UrlTemplate:
    """A URL with ``{}`` / ``{id}`` (or, for rows, ``{name}``) placeholders.

    Values are percent-encoded as one path or query component (``a b&c`` becomes
    ``a%20b%26c``) so an ID can never change the URL's structure.
    """

    def __init__(self, template: str) -> None:
        names = [m.group(1) or "" for m in _PLACEHOLDER.finditer(template)]
        if not names:
            raise TemplateError(f"template has no placeholder ({{}} or {{id}}): {template!r}")
        self.template = template
        self.names: frozenset[str] = frozenset(names)

    def expand(self, values: Mapping[str, str]) -> str:
        """Fill every placeholder; a name missing from ``values`` raises ``KeyError``."""

        def substitute(match: re.Match[str]) -> str:
            return quote_component(values[match.group(1) or ""])

        return _PLACEHOLDER.sub(substitute, self.template)

    def expand_line(self, line: str) -> str:
        return self.expand({"": line, "id": line})


def quote_component(value: str) -> str:
    """Percent-encode everything but unreserved characters; undecodable input bytes
    (kept as surrogates) are encoded as the original bytes."""
    return quote(value.encode("utf-8", "surrogateescape"), safe="")


def _normalise_url(text: str) -> str:
    """Percent-encode raw non-UTF-8 bytes of a URL line; everything else is kept as given."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return quote(text.encode("utf-8", "surrogateescape"), safe=":/?#[]@!$&'()*+,;=%~")
    return text


def validate_url(url: str) -> str | None:
    """Return why ``url`` cannot be fetched, or ``None`` when it is a usable http(s) URL."""
    from yarl import URL

    try:
        parsed = URL(url)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return "only http and https URLs are fetched"
    if not parsed.host:
        return "URL has no host"
    return None


def display_text(text: str) -> str:
    """The input as it goes into records: valid UTF-8, undecodable bytes shown as ``\\xNN``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def make_item(index: int, text: str, template: UrlTemplate | None) -> Item:
    """Classify one input: a URL is kept, anything else is an ID for the template.

    Never raises: an unusable input becomes an item carrying an ``invalid_url``
    error so it still gets its record.
    """
    shown = display_text(text)
    if _URL_SCHEME.match(text):
        url = _normalise_url(text)
    elif template is None:
        return Item(
            index,
            shown,
            None,
            FetchError(ErrorKind.INVALID_URL, "not an http(s) URL; use --template to expand IDs"),
        )
    else:
        url = template.expand_line(text)
    problem = validate_url(url)
    if problem is not None:
        return Item(index, shown, display_text(url), FetchError(ErrorKind.INVALID_URL, problem))
    return Item(index, shown, url)


def item_text(raw: bytes) -> str | None:
    """The item a raw input line holds, or ``None`` for blank and ``#`` comment lines."""
    stripped = raw.strip()
    if not _is_item(stripped):
        return None
    return stripped.decode("utf-8", "surrogateescape")


def _is_item(stripped: bytes) -> bool:
    return bool(stripped) and not stripped.startswith(b"#")


def check_readable(path: str) -> None:
    """Fail early, before any request, when an input file cannot be opened."""
    if path == STDIN:
        return
    if os.path.isdir(path):
        raise OSError(f"{path}: is a directory")
    with open(path, "rb"):
        pass


def _open_input(path: str) -> BinaryIO:
    """Unbuffered, so a read returns what a pipe has now instead of waiting for a full chunk."""
    if path != STDIN:
        return open(path, "rb", buffering=0)
    try:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    except (AttributeError, OSError, ValueError):  # a stand-in stdin with no descriptor
        return io.BytesIO(sys.stdin.buffer.read())


class LineFeed:
    """Lines of several inputs, read by a daemon thread in chunks, handed to the loop.

    At most ``_QUEUED_CHUNKS`` chunks wait at once, so memory is bounded whatever
    the input size. The thread is a daemon: a read blocked on an idle stdin must
    not keep the process alive after the run has ended.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = list(paths) or [STDIN]
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
            for path in self._paths:
                with _open_input(path) as stream:
                    rest = b""
                    while True:
                        self._credits.acquire()
                        if self._stopped.is_set():
                            return
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        lines = (rest + chunk).split(b"\n")
                        rest = lines.pop()
                        if not self._hand_over(lines):
                            return
                    if rest and not self._hand_over([rest]):
                        return
            self._hand_over(None)
        except BaseException as exc:  # handed to the loop, which raises it in context
            self._hand_over(exc)

    async def lines(self) -> AsyncGenerator[bytes, None]:
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            if isinstance(batch, BaseException):
                raise batch
            self._credits.release()
            for line in batch:
                yield line

    def close(self) -> None:
        self._stopped.set()
        self._credits.release()


async def read_items(
    paths: Sequence[str], template: UrlTemplate | None
) -> AsyncGenerator[Item, None]:
    """Items of files (``-`` is stdin) in order, indexed from 0; blanks and comments skipped."""
    feed = LineFeed(paths)
    index = 0
    try:
        async for raw in feed.lines():
            text = item_text(raw)
            if text is None:
                continue
            yield make_item(index, text, template)
            index += 1
    finally:
        feed.close()


async def items_from(
    values: Iterable[str] | AsyncIterable[str], template: UrlTemplate | None
) -> AsyncGenerator[Item, None]:
    """Items for the library API: every value given is one item, nothing is skipped."""
    index = 0
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield make_item(index, value, template)
            index += 1
    else:
        for value in values:
            yield make_item(index, value, template)
            index += 1


def count_items(path: str, stop: threading.Event | None = None) -> int | None:
    """How many items a regular file holds (for the progress total), or ``None`` if unknown.

    Streams the file; gives up (``None``) when ``stop`` is set or the input is not a
    regular file, since counting stdin would consume it.
    """
    if path == STDIN or not os.path.isfile(path):
        return None
    count = 0
    with open(path, "rb") as stream:
        for n, raw in enumerate(stream):
            if _is_item(raw.strip()):
                count += 1
            if stop is not None and n % 65536 == 0 and stop.is_set():
                return None
    return count
