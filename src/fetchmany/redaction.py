"""Keeping secrets the user gave out of what fetchmany prints and records.

A URL may carry credentials (``https://user:secret@host/``, or a token as the user
name, ``https://TOKEN@host/``). Records show such URLs with the secret replaced,
and anything printed on stderr passes through ``redact_text``, since error
messages from the network layer can quote a URL whole. The ``input`` field is
the exception: it is what the user gave, on stdout, where the user sent it.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "****"
# scheme://userinfo@ : the userinfo ends at the last @ before the path, query or
# fragment begins (a password may hold an unescaped @; a path may too, after a /).
_USERINFO: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s]*)@")


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    # user:password keeps the user; a lone user name may be a token, as pip treats it.
    return f"{match.group(1)}{user}:{MASK}@" if colon else f"{match.group(1)}{MASK}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def redact_header(name: str, value: str) -> str:
    """A header's value fit to print: masked when it carries credentials."""
    return MASK if name.strip().lower() in SECRET_HEADERS else value
