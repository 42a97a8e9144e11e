"""The event loop a run runs on, for one process and for each ``-P`` worker alike.

Its own module, below ``command`` and ``processes``, so that both take it from here
and neither imports the other.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Final

YOUNG_OBJECTS: Final = 50_000
"""Objects allocated (less those freed) between two collections of the youngest
generation. Python's 700 made a run at --limit 50 collect every few requests, each
time walking the objects of the requests in flight, which are freed a moment later
anyway: about 9k instructions a request, 2% of a request's (bench/RESULTS.md). Garbage
in cycles waits longer to be collected: a few megabytes at most."""


def tune_collector() -> None:
    """Set the garbage collector for a run of many short-lived requests: the CLI's
    choice, not the library's, which leaves its process's collector alone. What start-up
    made (modules, classes, the options) lives as long as the process: frozen, no
    collection walks it again, and a -P worker's fork shares its pages rather than
    copying each one a collection touches."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, oldest)


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when wanted and installed; None means asyncio's default."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
