"""The event loop a run runs on, for one process and for each ``-P`` worker alike.

Its own module, below ``command`` and ``processes``, so that both take it from here
and neither imports the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when wanted and installed; None means asyncio's default."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
