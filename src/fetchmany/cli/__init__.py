"""The command line: ``command`` declares and wires it, ``run`` runs it."""

from fetchmany.cli.command import main

__all__ = ["main"]
