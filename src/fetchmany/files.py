"""Files fetchmany creates, made the way the user's other tools make them."""

from __future__ import annotations

import functools
import os


@functools.cache
def new_file_mode() -> int:
    """The mode a plain ``open()`` would give a new file under this process's umask.

    Temporary files (``mkstemp``) are 0600; a file renamed into place from one must
    be given this mode, or results would be unreadable to the user's group. Read
    once: ``os.umask`` can only be read by setting it, which is not thread-safe.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
