"""`python -m fetchmany`."""

from fetchmany.cli import main

main()
