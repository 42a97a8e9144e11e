"""Keeping secrets the user gave out of what fetchmany prints and records.

A URL may carry credentials (``https://user:secret@host/``, or a token as the user
name, ``https://TOKEN@host/``). Records show such URLs with the secret replaced: a
URL known to be one goes through ``redact_url`` (or ``redact_valid`` or ``redact_parsed``,
for one known to parse), which masks
whatever its userinfo holds; free text (error messages, which can quote a URL whole,
and header values) through ``redact_text``. The ``input`` field is the exception: it
is what the user gave, on stdout, where the user sent it; stderr shows the record's
masked ``url`` instead.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from yarl import URL

MASK: Final = "****"
# A URL's start: a scheme, or none (a scheme-relative //host, as a Location may be).
_START: Final = r"((?:[A-Za-z][A-Za-z0-9+.\-]*:)?[/\\]{2})"
# In free text (a message, a header's value): START userinfo@, the userinfo running to
# the last @ before the path, query or fragment begins, so a user name holding an @ (an
# email address) is masked whole. Whitespace, <, > and " end it: they delimit URLs in
# text (a Link header's <...>) and would otherwise take a neighbour's @ for the
# userinfo's. Text holding a URL as a person typed it goes through redact_url instead.
_USERINFO: Final = re.compile(_START + r'([^/?#\s<>"]*)@')
# A whole string known to be one URL (a record's url, a Location): the userinfo runs
# to its last @, whatever it holds, since there is nothing else in the string it could
# belong to; a user name may hold an @ too.
_WHOLE_URL: Final = re.compile(_START + r"(?:([^/?#:]*):(.*)|([^/?#:]*))@(?=[^@]*$)", re.DOTALL)
# Inside a URL (its path or query): a URL of its own has a scheme, or begins a query
# value (``?next=//u:p@h``); a path may hold ``//x@y`` (an empty segment, an @) and is
# then no URL. An empty userinfo (``//@``) holds nothing to mask.
_NESTED: Final = re.compile(
    r"((?:[A-Za-z][A-Za-z0-9+.\-]*:|(?<=[?=&]))[/\\]{2})" + r'([^/?#\s<>"]+)@'
)


def _mask_userinfo(start: str, userinfo: str) -> str:
    # user:password keeps the user; a lone user name may be a token, as pip treats it;
    # an empty one (``http://@host/``) holds nothing to mask, and is shown as given.
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{start}{user}:{MASK}@"
    return f"{start}{MASK}@" if userinfo else f"{start}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: _mask_userinfo(m[1], m[2]), text)


def _redact_nested(url: str) -> str:
    """``url`` with the credentials of the URLs nested in its path or query masked."""
    return _NESTED.sub(lambda m: _mask_userinfo(m[1], m[2]), url)


def redact_url(url: str) -> str:
    """One URL, possibly invalid, with its credentials masked, whatever they hold.

    A URL that parses with no userinfo (``http://h:8080/@user?mail=a@b.c``: its @s are
    in the path and query) is left whole; one that does not parse is masked up to its
    last @, since a password typed raw may hold / ? # or @."""
    if "@" not in url:
        return url
    if not _has_userinfo(url):
        return _redact_nested(url)  # URLs nested in the path or query (?next=http://u:p@...)
    whole = _WHOLE_URL.match(url.replace("\\", "/"))
    if whole is not None:
        start, user = whole[1], whole[2]
        # The one masking rule: the user kept before a colon (whatever the password
        # holds), a lone user name masked, an empty one kept.
        userinfo = f"{user}:" if user is not None else whole[4]
        url = _mask_userinfo(start, userinfo) + url[whole.end() :]
    return _redact_nested(url)  # URLs nested in the path or query (?next=http://u:p@...)


_URL_START: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def redact_proxy(proxy: str) -> str:
    """A proxy as the user gave it (``--proxy``, ``HTTPS_PROXY``), its credentials
    masked: a ``scheme://`` URL's as ``redact_url`` masks them; without ``scheme://``
    (``user:pw@host:3128``, ``socks5:/user:pw@host``) nothing tells the userinfo by its
    place, so all up to the last @ is masked."""
    hidden = redact_url(proxy)
    if "@" in hidden and _URL_START.match(proxy) is None:
        return f"{MASK}@{hidden.rsplit('@', 1)[1]}"
    return hidden


def redact_valid(url: str) -> str:
    """One URL known to parse (a URL as sent), credentials masked exactly: its userinfo
    is what stands between ``//`` and the authority's last @, and an @ in its path or
    query is not one (``?next=http://u:p@...`` is masked as a URL of its own).

    One rule does both: the one for URLs nested in a path or query, which finds the
    URL's own userinfo as it finds theirs. It ends a userinfo at whitespace, <, > or ",
    which a URL as sent holds only escaped (``fetchmany.urls``)."""
    if "@" not in url:
        return url
    return _redact_nested(url)


def redact_parsed(url: URL) -> str:
    """A parsed URL as text, credentials masked exactly (an @ in its path is kept)."""
    text = str(url)
    if "@" not in text:
        return text
    if url.raw_password is not None:
        text = str(url.with_password(MASK))
    elif url.raw_user is not None:
        text = str(url.with_user(MASK))
    return _redact_nested(text)  # URLs nested in the path or query (?next=http://u:p@...)


def _has_userinfo(url: str) -> bool:
    """Whether ``url`` may carry credentials: it does not parse, or parses with a user.
    Backslashes read as slashes, as browsers and aiohttp read a Location's."""
    from yarl import URL

    try:
        parsed = URL(url.replace("\\", "/"))
        return parsed.raw_user is not None or parsed.raw_password is not None
    except (ValueError, TypeError):
        return True


SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})


def redact_header(name: str, value: str) -> str:
    """A header's value fit to print: masked when it carries credentials."""
    return MASK if name.strip().lower() in SECRET_HEADERS else value
