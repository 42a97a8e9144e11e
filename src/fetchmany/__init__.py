"""fetchmany: fetch many URLs concurrently, one record per input, in input order.

The public library API: every name a caller needs, importable from here
(``from fetchmany import FetchOptions, RetryPolicy, fetch_many``). Names are loaded
on first use so that importing the package (as the CLI does for ``--version``) does
not import aiohttp or rich.

    import asyncio
    from fetchmany import FetchOptions, fetch_many

    async def main() -> None:
        async for record in fetch_many(["https://example.org/"], FetchOptions(limit=5)):
            print(record.index, record.status)

    asyncio.run(main())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fetchmany._version import __version__

if TYPE_CHECKING:
    from fetchmany.api import Items, fetch_batches, fetch_many
    from fetchmany.fetch.adaptive import Settled
    from fetchmany.fetch.engine import Engine
    from fetchmany.fetch.retry import RetryPolicy
    from fetchmany.input.templates import TemplateError
    from fetchmany.options import Adaptive, FetchOptions
    from fetchmany.records import BodyMode, ErrorKind, FetchError, Record

__all__ = [
    "Adaptive",
    "BodyMode",
    "Engine",
    "ErrorKind",
    "FetchError",
    "FetchOptions",
    "Items",
    "Record",
    "RetryPolicy",
    "Settled",
    "TemplateError",
    "__version__",
    "fetch_batches",
    "fetch_many",
]

_LAZY = {
    "FetchOptions": "fetchmany.options",
    "Adaptive": "fetchmany.options",
    "RetryPolicy": "fetchmany.fetch.retry",
    "BodyMode": "fetchmany.records",
    "ErrorKind": "fetchmany.records",
    "FetchError": "fetchmany.records",
    "Record": "fetchmany.records",
    "Settled": "fetchmany.fetch.adaptive",
    "Engine": "fetchmany.fetch.engine",
    "TemplateError": "fetchmany.input.templates",
    "Items": "fetchmany.api",
    "fetch_many": "fetchmany.api",
    "fetch_batches": "fetchmany.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fetchmany' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
