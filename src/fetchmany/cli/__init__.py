"""The command line: ``command`` declares and wires it, ``run`` runs it.

``main`` imports the command only when called, inside a guard: Ctrl-C while
click and the rest load (a tenth of a second a user can hit) ends like any other
Ctrl-C, with exit 130 and no traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        from fetchmany.cli.command import main as run
    except KeyboardInterrupt:
        sys.exit(130)
    run(argv)


__all__ = ["main"]
