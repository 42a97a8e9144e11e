"""Flags of curl, wget, HTTPie and httpx that fetchmany spells otherwise, and how.

Given one of them, fetchmany says the spelling to use instead of click's bare "No such
option" (the flags that fetchmany takes as they are, ``-L``, ``-I``, ``-s``, ``-m``,
``--retry``, are options of its own). ``docs/coming-from.md`` has the whole table; a
test keeps every flag here in it.
"""

from __future__ import annotations

from typing import Final

_SAVE = "bodies go to files with --save-dir DIR (-o is where the records go)"
_CREDENTIALS = "put user:password@ in the URL, or use --netrc, or -H 'Authorization: ...'"
_FOLLOWED = "redirects are followed by default, up to --max-redirects N"
_REFRESH = "use --refresh PREVIOUS: each item asked conditionally on its earlier record"
_TLS = "use -k/--insecure, or --ca-bundle FILE"

ELSEWHERE: Final[dict[str, str]] = {
    "--compressed": "fetchmany asks for gzip, deflate, br and zstd, and decodes them, always",
    "-O": _SAVE,
    "--remote-name": _SAVE,
    "--output-dir": _SAVE,
    "--download": _SAVE,
    "-u": _CREDENTIALS,
    "--user": _CREDENTIALS,
    "--auth": _CREDENTIALS,
    "-w": "choose the record's fields with --fields (curl's -w); pace with --rate and "
    "--limit 1 (wget's -w)",
    "--write-out": "choose the record's fields with --fields (status, elapsed_ms...); --timings",
    "-i": "record response headers with --response-headers all (or some names)",
    "--include": "record response headers with --response-headers all (or some names)",
    "-D": "record response headers with --response-headers all (or some names)",
    "--dump-header": "record response headers with --response-headers all (or some names)",
    "--cacert": "use --ca-bundle FILE",
    "--ca-certificate": "use --ca-bundle FILE",
    "--max-redirs": "use --max-redirects N",
    "--max-redirect": "use --max-redirects N",
    "--retry-max-time": "use -m/--max-time SECONDS: a deadline per item, all attempts together",
    "--retry-delay": "use --backoff SECONDS (the first wait; it doubles, with jitter)",
    "--waitretry": "use --backoff SECONDS (the first wait; it doubles, with jitter)",
    "--retry-on-http-error": "use --retry-on CODES",
    "--retry-connrefused": "connection errors are retried by default (--retries N)",
    "--retry-all-errors": "connection errors and timeouts are retried by default (--retries N)",
    "--tries": "use --retries N (wget's --tries counts the first try: --tries 3 is --retries 2)",
    "-Z": "fetchmany always fetches in parallel: --limit N",
    "--parallel": "fetchmany always fetches in parallel: --limit N",
    "--parallel-max": "use --limit N",
    "-b": "use -H 'Cookie: name=value'",
    "--cookie": "use -H 'Cookie: name=value'",
    "-e": "use -H 'Referer: URL'",
    "--referer": "use -H 'Referer: URL'",
    "-S": "errors are always shown (curl's -S); the answer's headers are "
    "--response-headers all (wget's -S)",
    "--show-error": "errors are always shown (-s/-q hides only the summary)",
    "--fail": "a failure is always a record (ok false) and makes the exit status 1",
    "--check-status": "a failure is always a record (ok false) and makes the exit status 1",
    "-F": _FOLLOWED,
    "--follow": _FOLLOWED,
    "--spider": "use -I/--head",
    "--no-check-certificate": _TLS,
    "--verify": _TLS,
    "--max-filesize": "use --max-body-size SIZE",
    "--post-data": "use -d TEMPLATE",
    "-U": "use -A/--user-agent",
    "--etag-compare": _REFRESH,
    "-z": _REFRESH,
    "--time-cond": _REFRESH,
    "--wait": "use --rate (request starts per second, evenly spaced) with --limit 1",
    "--limit-rate": "fetchmany paces requests, not bytes: --rate N/s",
}
"""A flag as another tool spells it, and what to give fetchmany instead."""


def elsewhere(flag: str) -> str | None:
    """What to give fetchmany for ``flag`` (``--compressed``: nothing, it always asks
    for compression), or None when it is no flag of the tools it knows."""
    return ELSEWHERE.get(flag.partition("=")[0])
