"""SIGINT and SIGTERM at every moment of a fetchmany process, so that none leaves a trace.

A process's life, as these two signals see it (the command line's; the library never
touches signal handlers):

- from ``main()`` until the run's event loop takes them: they end the process at once,
  as exceptions (``KeyboardInterrupt``, ``Terminated``) that unwind through the code
  that opened the output, which abandons it: no temporary file, no lock, no empty file;
- while the loop runs: the run's ``Interruption`` (``cli/run.py``) stops it, and the
  output is closed validly;
- once the run has ended: ignored; the output is settled and the exit status says
  whether one came during the run.

A step that must happen whole (a file created and noted for cleanup, a fork) holds
them back (``held_back``) and meets them right after. A ``-P`` worker is forked with
them held back and keeps those its parent sends (``WorkerSignals``) until its own
loop takes them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final, NoReturn

STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGTERM})


class Terminated(BaseException):
    """SIGTERM before the run's loop took it: unwinds like ``KeyboardInterrupt`` does for
    SIGINT (a ``BaseException``, so that no ``except Exception`` swallows it)."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated


def stop_at_once() -> None:
    """From ``main()`` on: SIGINT raises ``KeyboardInterrupt``, SIGTERM ``Terminated``."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def ignore_stops() -> None:
    """The run has ended and its output is settled: a late signal changes nothing."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def held_back() -> Iterator[None]:
    """SIGINT and SIGTERM wait (pending) until the block ends, then arrive: for a step that
    must happen whole. The caller must be ready for them at the block's end (inside the
    ``try`` that cleans up what the block made)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class WorkerSignals:
    """In a ``-P`` worker just forked (signals held back by the parent around the fork):
    the stops its parent sends, kept until the worker's own loop takes them.

    The fork copied the parent's handlers and its loop's wakeup descriptor, through
    which a signal here would reach the parent as if it were its own; both are
    replaced before the signals are let in. A signal that reached the worker before it
    left the terminal's process group (a Ctrl-C) is dropped: the parent got it too, and
    forwards it once.
    """

    def __init__(self, parent: int) -> None:
        self.received: list[int] = []
        signal.set_wakeup_fd(-1)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._keep)
        while (info := signal.sigtimedwait(STOP_SIGNALS, 0)) is not None:
            if info.si_pid == parent:
                self.received.append(info.si_signo)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _keep(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
