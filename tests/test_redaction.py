"""Secrets the user gave stay out of what is printed and recorded."""

from __future__ import annotations

import pytest
from yarl import URL

from fetchmany.redaction import redact_header, redact_parsed, redact_text, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://u:p@h.test/x", "http://u:****@h.test/x"),
        ("https://TOKEN@h.test:8/", "https://****@h.test:8/"),
        ("see http://u:p@ss@h.test/a@b now", "see http://u:****@h.test/a@b now"),
        ("https://medium.com/@user/post", "https://medium.com/@user/post"),
        ("http://h.test/?mail=a@b.c", "http://h.test/?mail=a@b.c"),
        ("no url at all a@b", "no url at all a@b"),
        ("a http://x:1@h and https://y:2@k", "a http://x:****@h and https://y:****@k"),
    ],
)
def test_credentials_in_urls_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_secret_headers_are_masked() -> None:
    assert redact_header("Authorization", "Bearer x") == "****"
    assert redact_header("cookie", "a=b") == "****"
    assert redact_header("Accept", "text/html") == "text/html"


def test_a_rejected_secret_header_is_not_echoed() -> None:
    from conftest import run_cli

    result = run_cli("-H", "Authorization: Bearer s3cret\nX: y", stdin=b"")
    assert result.returncode == 2
    assert "s3cret" not in result.stderr
    assert "Authorization: ****" in result.stderr


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://u:pa ss@h.test/", "pa ss"),
        ("http://u:p\tw@h.test/", "p\tw"),
        ("http://u:p#w@h.test/", "p#w"),
        ("http://u:p?w/x@h.test/", "p?w/x"),
        ("http://u:p@w@h.test/a", "p@w"),
    ],
)
def test_a_url_as_typed_is_masked_whatever_its_password_holds(url: str, secret: str) -> None:
    masked = redact_url(url)
    assert secret not in masked
    assert masked.startswith("http://u:****@")


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("http://us er:SECRET@h.test/", "SECRET"),
        ("http://us\ter:SECRET@h.test/", "SECRET"),
        ("http://us\u00a0er:SECRET@h.test/", "SECRET"),
        ("http://TO KEN@h.test/", "TO KEN"),
        ("ftp://us er:HUN TER@h.test/x", "HUN TER"),
    ],
)
def test_whitespace_in_a_user_name_does_not_hide_the_password(url: str, secret: str) -> None:
    """Found by a hostile tester: the masks stopped at whitespace, so a user name holding
    a space or a tab (as typed, or in a server's Location) left the password printed."""
    assert secret not in redact_url(url)
    assert secret not in redact_text(f"e.g. {url}: connect: refused")
    assert secret not in redact_text(f"redirect to a URL that is not fetched: {url}")


def test_a_parsed_url_is_masked_exactly_and_nested_urls_too() -> None:
    url = URL("http://u:p@h.test/@me?next=http://bob:hunter2@k.test/")
    assert redact_parsed(url) == "http://u:****@h.test/@me?next=http://bob:****@k.test/"
    assert redact_parsed(URL("http://TOKEN@h.test/x")) == "http://****@h.test/x"
    assert redact_parsed(URL("http://h.test/@me")) == "http://h.test/@me"
