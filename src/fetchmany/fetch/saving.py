"""``--save-dir``: stream response bodies to files instead of holding them in records.

A body is written chunk by chunk to a temporary file in the directory, hashed as
it goes, and renamed to its final name only when complete, so memory per
request stays at one chunk whatever the body size, and a file with the final
name is never half-written. Names come from a template and are sanitised so
that no input can write outside the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import re
import tempfile
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Final

from fetchmany.fetch.bodies import split_content_type
from fetchmany.files import new_file_mode
from fetchmany.input.templates import MissingField, Template, raw_text
from fetchmany.options import DEFAULT_SAVE_NAME
from fetchmany.records import valid_text

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_KNOWN_EXTENSIONS = {
    "application/json": ".json",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "image/jpeg": ".jpg",
    "application/octet-stream": ".bin",
}


def extension_for(content_type: str | None) -> str:
    media, _ = split_content_type(content_type)
    if not media:
        return ".bin"
    if media in _KNOWN_EXTENSIONS:
        return _KNOWN_EXTENSIONS[media]
    if media.endswith("+json"):
        return ".json"
    return mimetypes.guess_extension(media, strict=False) or ".bin"


def sanitise(name: str, limit: int = 200) -> str:
    """A single safe file name: no separators, controls or leading dots; bounded length;
    valid text (an input's undecodable byte as ``_xff``, not a lone surrogate that no
    record could carry)."""
    cleaned = _UNSAFE.sub("_", valid_text(name)).strip()
    if cleaned.startswith("."):
        cleaned = "_" + cleaned
    if len(os.fsencode(cleaned)) > limit:  # file systems count bytes (255), not characters
        stem, ext = os.path.splitext(cleaned)
        if len(os.fsencode(ext)) > limit // 4:
            stem, ext = cleaned, ""  # a "suffix" that long is no extension
        room = limit - len(os.fsencode(ext))
        while len(os.fsencode(stem)) > room:
            stem = stem[: max(len(stem) - 1, (len(stem) * room) // len(os.fsencode(stem)))]
        cleaned = stem + ext
    return cleaned or "_"


@dataclass(frozen=True, slots=True)
class SavedBody:
    """What ``SaveDir.save`` wrote: where, its hash and size, whether the size cap cut
    it, and the body itself when it was asked to keep it."""

    path: str
    sha256: str
    size: int
    truncated: bool
    body: bytes = b""


KEPT: Final = -1
"""The owner of a file a resumed output's records already name: no item of this run."""


def names_may_collide(name_template: str) -> bool:
    """Whether two items can be given one name by ``--save-name``: any template that does
    not start with ``{index}``, which is unique."""
    return not name_template.startswith("{index}")


class SaveDir:
    """Where bodies go and what each file is called.

    No two items of a run get one name: a template that can map two items to the
    same name (any that does not start with ``{index}``, which is unique) has the
    name of the item that finishes later made distinct with ``-2``, ``-3``... before
    the extension; the record's ``path`` says which.
    The names of such a run are remembered, so memory grows with the files saved.
    """

    def __init__(self, directory: str, name_template: str = DEFAULT_SAVE_NAME) -> None:
        self.directory = os.path.realpath(directory)
        self.template = Template.plain(name_template, raw_text)
        self._taken: dict[str, int] | None = {} if names_may_collide(name_template) else None
        """Each name given out, by the index of the item it is for."""

    def name_for(
        self, index: int, text: str, fields: Mapping[str, str] | None, content_type: str | None
    ) -> str:
        """The sanitised file name of one item's body. A row without a field the name
        needs is a ``save`` error for that item, as a missing field of --template is an
        invalid_url one: never a name the user did not ask for."""
        values = {
            **(fields or {}),
            "": text,
            "id": text,
            "index": f"{index:08d}",
            "ext": extension_for(content_type),
        }
        try:
            name = self.template.expand(values)
        except MissingField as missing:
            raise SaveError(f"row has no field {missing.name!r} for --save-name") from None
        return self._distinct(sanitise(name), index)

    def _distinct(self, name: str, index: int) -> str:
        taken = self._taken
        if taken is None:
            return name
        stem, ext = os.path.splitext(name)
        copy = 1
        while taken.setdefault(name, index) != index:  # another item's: try the next
            copy += 1
            name = f"{stem}-{copy}{ext}"
        return name

    def reserve(self, path: str, index: int) -> None:
        """``--refresh``: the file an item's previous record names is that item's, so no
        other item of this run is saved under its name (a 304 keeps it; a new answer
        replaces it). Names outside the directory are no concern of this run."""
        if self._taken is not None and os.path.dirname(os.path.realpath(path)) == self.directory:
            self._taken.setdefault(os.path.basename(path), index)

    def path_for(
        self, index: int, text: str, fields: Mapping[str, str] | None, content_type: str | None
    ) -> str:
        """The path of one item's body file, inside the directory whatever the input."""
        name = self.name_for(index, text, fields, content_type)
        path = os.path.join(self.directory, name)
        if os.path.dirname(os.path.realpath(path)) != self.directory:
            # A link at the name (the only way left out): the item's record says so.
            self.release(path)
            raise SaveError(f"refusing to write outside {self.directory}: {name!r} is a link")
        return path

    def release(self, path: str) -> None:
        """An attempt that saved nothing under ``path`` gives its name back, so the
        item's retry gets the same name rather than the next free one."""
        if self._taken is not None:
            self._taken.pop(os.path.basename(path), None)

    def remove(self, path: str) -> None:
        """Take back a body saved under ``path`` (an attempt that is retried): the file
        goes, and its name is free again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.release(path)

    def open_body(self) -> BodyFile:
        return BodyFile(self.directory)

    async def save(
        self,
        chunks: AsyncIterable[bytes],
        *,
        index: int,
        text: str,
        fields: Mapping[str, str] | None,
        content_type: str | None,
        cap: int,
        keep: bool = False,
    ) -> SavedBody:
        """Stream a body into its file, at most ``cap`` bytes, and say what was saved.

        ``keep``: also return the body itself (for ``--pick``). Raises ``SaveError``
        for a disk error; on any failure no file is left and the name is given back.
        """
        path = self.path_for(index, text, fields, content_type)
        try:
            body_file = self.open_body()
        except SaveError:
            self.release(path)
            raise
        kept = bytearray() if keep else None
        truncated = False
        try:
            async for chunk in chunks:
                room = cap - body_file.size
                if len(chunk) > room:
                    chunk = chunk[:room]
                    truncated = True
                body_file.write(chunk)
                if kept is not None:
                    kept += chunk
                if truncated:
                    break
            body_file.keep(path)
        except BaseException:
            body_file.discard()
            self.release(path)
            raise
        return SavedBody(path, body_file.sha256, body_file.size, truncated, bytes(kept or b""))


class SaveError(Exception):
    """A body could not be written to its file (a full disk, permissions): the item's
    record says so (error kind ``save``) and the run goes on."""


class BodyFile:
    """One body being written: a temporary file plus a running SHA-256.

    Every file operation raises ``SaveError`` rather than ``OSError``, so a disk
    error is never taken for a network one.
    """

    def __init__(self, directory: str) -> None:
        try:
            fd, self._temp = tempfile.mkstemp(prefix=".fetchmany-", suffix=".part", dir=directory)
        except OSError as exc:
            raise SaveError(f"cannot create a file in {directory}: {exc.strerror}") from None
        self._stream: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        try:
            self._stream.write(chunk)
        except OSError as exc:
            raise SaveError(f"cannot write {self._temp}: {exc.strerror}") from None
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def keep(self, path: str) -> None:
        """Close and move into place under its final name."""
        try:
            self._stream.close()
            os.chmod(self._temp, new_file_mode())
            os.replace(self._temp, path)
        except OSError as exc:
            raise SaveError(f"cannot write {path}: {exc.strerror}") from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.close()
        with contextlib.suppress(OSError):
            os.unlink(self._temp)
