"""Keeping secrets the user gave out of what fetchmany prints and records.

A URL may carry credentials (``https://user:secret@host/``, or a token as the user
name, ``https://TOKEN@host/``). Records show such URLs with the secret replaced,
and anything printed on stderr passes through ``redact_text``, since error
messages from the network layer can quote a URL whole. The ``input`` field is
the exception: it is what the user gave, on stdout, where the user sent it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from yarl import URL

MASK: Final = "****"
_SCHEME: Final = r"([A-Za-z][A-Za-z0-9+.\-]*://)"
# In free text: scheme://userinfo@, where the userinfo ends at the last @ before the
# path, query or fragment begins (a password may hold an unescaped @; a path may
# too, after a /). Spaces, tabs and other control characters do not end it: a URL
# as the user typed it, or a Location header, may hold them in a user name or a
# password (``http://us er:secret@host/``), and masking a little too much of a
# message is better than printing a secret. Only a line break ends it.
_USERINFO: Final = re.compile(_SCHEME + r"(?:([^/?#\n:@]*):[^/?#\n]*|([^/?#\n:]*))@")
# A whole string known to be one URL (a record's url): the password runs to its last @,
# whitespace included, since there is nothing else in the string it could belong to.
_WHOLE_URL: Final = re.compile(_SCHEME + r"([^/?#:@]*):(.*)@(?=[^@]*$)", re.DOTALL)


def _mask(match: re.Match[str]) -> str:
    # user:password keeps the user; a lone user name may be a token, as pip treats it.
    if match.group(2) is not None:
        return f"{match.group(1)}{match.group(2)}:{MASK}@"
    return f"{match.group(1)}{MASK}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


def redact_url(url: str) -> str:
    """One URL, possibly invalid, with its credentials masked, whatever they hold."""
    if "@" not in url:
        return url
    return _WHOLE_URL.sub(_mask, redact_text(url), count=1)


def redact_parsed(url: URL) -> str:
    """A parsed URL as text, credentials masked exactly (an @ in its path is kept)."""
    text = str(url)
    if "@" not in text:
        return text
    if url.raw_password is not None:
        text = str(url.with_password(MASK))
    elif url.raw_user is not None:
        text = str(url.with_user(MASK))
    return redact_text(text)  # URLs nested in the path or query (?next=http://u:p@...)


SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def redact_header(name: str, value: str) -> str:
    """A header's value fit to print: masked when it carries credentials."""
    return MASK if name.strip().lower() in SECRET_HEADERS else value
