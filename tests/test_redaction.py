"""Secrets the user gave stay out of what is printed and recorded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
import hypothesis
import pytest
from aiohttp import web
from conftest import LoopbackServer, jsonl, run_process
from hypothesis import assume, example
from hypothesis import strategies as st
from test_client import NESTED, landing_app
from yarl import URL

from fetchmany.redaction import (
    redact_header,
    redact_parsed,
    redact_proxy,
    redact_text,
    redact_url,
    redact_valid,
)
from fetchmany.urls import sendable

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


@pytest.mark.parametrize("redact", [redact_text, redact_url, redact_valid])
def test_a_password_holding_a_colon_is_masked_whole(redact: Callable[[str], str]) -> None:
    """The user name ends at the first colon (RFC 3986 3.2.1): what follows, colons and
    all, is the password (mutation testing found "u:pa:****@" would have passed)."""
    for url in ("http://u:pa:ss@h.test/x", "http://u::ss@h.test/x", "http://u:pass:@h.test/x"):
        assert redact(url) == "http://u:****@h.test/x"


def test_secret_headers_are_masked() -> None:
    assert redact_header("Authorization", "Bearer x") == "****"
    assert redact_header("cookie", "a=b") == "****"
    assert redact_header("Accept", "text/html") == "text/html"


@pytest.mark.parametrize("name", ["Authorization", "Proxy-Authorization", "Cookie", "COOKIE"])
def test_a_rejected_secret_header_is_not_echoed(name: str) -> None:
    """Each header that carries credentials, refused for a control character in its
    value, is named with its value masked."""
    from conftest import run_cli

    result = run_cli("-H", f"{name}: Basic s3cret\x01", stdin=b"")
    assert result.returncode == 2
    assert "s3cret" not in result.stderr
    assert f"{name}: ****" in result.stderr
    assert redact_header(name, "s3cret") == "****"
    assert redact_header("X-Api-Note", "s3cret") == "s3cret"  # any other is shown


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
        ("http://me@corp.com:hunter2@h.test/x", "hunter2"),  # an email as the user name
        ("http://me@corp.com:hunter2\tx@h.test/ok", "hunter2"),
        ("//u:hunter2@h.test/ok", "hunter2"),  # a scheme-relative Location
        ("http://u:p[w\\x@h/", "p[w"),
    ],
)
def test_a_whole_url_is_masked_whatever_its_userinfo_holds(url: str, secret: str) -> None:
    """Found by hostile testers: the masks stopped at whitespace, at the first @ of an
    email used as the user name, and missed //userinfo@ without a scheme."""
    masked = redact_url(url)
    assert secret not in masked
    assert "****@h" in masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "e.g. http://me@corp.com:hunter2@h.test/x: refused",
            "e.g. http://me@corp.com:****@h.test/x: refused",
        ),
        ("<http://me@c.com:S3CR3T@y/>", "<http://me@c.com:****@y/>"),
        ("see //u:pw@h/x", "see //u:****@h/x"),
        # Harmless text stays as it is: no credential, nothing masked.
        (
            "<http://example.com:8080>; rel=a, <mailto:ops@example.com>",
            "<http://example.com:8080>; rel=a, <mailto:ops@example.com>",
        ),
        ("http://host:80 see a@b", "http://host:80 see a@b"),
    ],
)
def test_free_text_masks_userinfo_and_leaves_the_rest(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_an_invalid_redirects_message_masks_the_whole_location() -> None:
    from fetchmany.fetch.client import classify
    from fetchmany.options import FetchOptions

    error = classify(
        aiohttp.NonHttpUrlRedirectClientError("ftp://us er:HUN TER@h/x"), FetchOptions()
    )
    assert "HUN TER" not in error.message
    assert error.message.endswith("ftp://us er:****@h/x")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1//@",  # found by hypothesis: an empty path segment, then an @
        "http://h.test/a//b@c",  # //b@c in a path is no URL: nothing in it is a password
        "http://h.test/files//alice@example.com/cv.pdf",
    ],
)
def test_an_at_after_a_double_slash_in_a_path_is_kept(url: str) -> None:
    """The url field is the URL as given, masked only where it holds credentials."""
    assert redact_url(url) == url
    assert redact_valid(url) == url
    assert redact_parsed(URL(url)) == url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://h.test/x?next=//u:pw@k.test/", "http://h.test/x?next=//u:****@k.test/"),
        ("http://h.test/x?a=1&b=//TOKEN@k.test", "http://h.test/x?a=1&b=//****@k.test"),
        ("http://h.test/x//y?n=ftp://u:pw@k.test/", "http://h.test/x//y?n=ftp://u:****@k.test/"),
    ],
)
def test_a_url_nested_in_a_query_is_masked(url: str, masked: str) -> None:
    assert redact_url(url) == masked
    assert redact_valid(url) == masked
    assert redact_parsed(URL(url)) == masked


def test_a_parsed_url_is_masked_exactly_and_nested_urls_too() -> None:
    url = URL("http://u:p@h.test/@me?next=http://bob:hunter2@k.test/")
    assert redact_parsed(url) == "http://u:****@h.test/@me?next=http://bob:****@k.test/"
    assert redact_parsed(URL("http://TOKEN@h.test/x")) == "http://****@h.test/x"
    assert redact_parsed(URL("http://h.test/@me")) == "http://h.test/@me"


def test_the_summary_never_shows_a_secret_a_template_put_in_the_url() -> None:
    """Found by a hostile tester: the summary's e.g. line showed the input, which a
    template had made the URL's user name or password; it shows the masked url."""
    from conftest import run_cli

    for template, given in (
        ("http://{}@127.0.0.1:1/x", b"S3CR3TTOKEN\n"),
        ("http://me:{}@127.0.0.1:1/x", b"S3CR3TTOKEN\n"),
    ):
        result = run_cli("-t", template, "--retries", "0", stdin=given)
        assert result.returncode == 1
        assert "S3CR3TTOKEN" not in result.stderr
        assert "e.g. http://" in result.stderr


def test_no_summary_line_or_resume_message_shows_a_secret_from_the_input(
    tmp_path: Path,
) -> None:
    """Found by a hostile tester: a row whose url could not be made (a field missing)
    showed the raw row in the summary, and a resume refusal quoted a password holding a
    space, a quote or < >."""
    from conftest import run_cli

    rows = tmp_path / "rows.csv"
    rows.write_text("user,pw,path\nbob,SECRET6\n")
    result = run_cli(str(rows), "-t", "http://{user}:{pw}@127.0.0.1:1/{path}")
    assert "SECRET6" not in result.stderr
    assert "e.g. item 0: invalid_url" in result.stderr
    out = tmp_path / "out.jsonl"
    run_cli("-o", str(out), "--retries", "0", stdin=b"http://127.0.0.1:1/a\n")
    for secret in ("R SECRET2", 'R"SECRET', "R<SECRET", "R>SECRET"):
        given = f"http://u:{secret}@127.0.0.1:1/ok\n".encode()
        refused = run_cli("-o", str(out), "--resume", stdin=given)
        assert refused.returncode == 2
        assert secret not in refused.stderr
        assert "u:****@" in refused.stderr


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("http://u:pw@proxy.test:3128", "http://u:****@proxy.test:3128"),
        ("socks5h://TOKEN@proxy.test:1080", "socks5h://****@proxy.test:1080"),
        # No scheme://: all up to the last @ is masked, an @ in the user name included.
        ("u:pw@proxy.test:3128", "****@proxy.test:3128"),
        ("us@er:pw@proxy.test:3128", "****@proxy.test:3128"),
        ("a@b@c:p@w@proxy.test:3128", "****@proxy.test:3128"),
        ("socks5:/u@x:pw@proxy.test:1", "****@proxy.test:1"),
        ("proxy.test:3128", "proxy.test:3128"),
    ],
)
def test_a_proxy_is_shown_with_its_credentials_masked(proxy: str, shown: str) -> None:
    """``--proxy`` and the environment's proxies as errors and the summary show them."""
    assert redact_proxy(proxy) == shown


@pytest.mark.parametrize("redact", [redact_text, redact_url, redact_valid])
def test_an_empty_userinfo_holds_nothing_to_mask_and_is_kept(
    redact: Callable[[str], str],
) -> None:
    """``http://@host/`` is shown as given, by every rule alike (a record's url once
    read ``http://****@host/``, though no secret was there)."""
    for url in ("http://@h.test/", "http://@h.test/a?next=http://u:p@k/"):
        expected = url.replace("u:p@", "u:****@")
        assert redact(url) == expected
    assert redact_parsed(URL("http://@h.test/", encoded=True)) == "http://@h.test/"


@pytest.mark.parametrize("url", ["http://@h.test:99999/a", "http://@[::1/x", "https://@h.test:x"])
def test_a_url_that_does_not_parse_keeps_an_empty_userinfo_too(url: str) -> None:
    """An invalid URL's record shows an empty userinfo as given, as its message does
    (its ``url`` once read ``http://****@h.test:99999/`` beside a message quoting
    ``http://@h.test:99999/``); a userinfo that holds anything is still masked."""
    from fetchmany.input.sources import make_item
    from fetchmany.input.templates import RequestTemplate

    item = make_item(0, url, RequestTemplate())
    assert item.error is not None
    assert item.url == url
    assert redact_url("http://@@h.test:99999/") == "http://****@h.test:99999/"
    assert redact_url("http://:@h.test:99999/") == "http://:****@h.test:99999/"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18731/@user/post",
        "http://127.0.0.1:18731/ok?mail=a@b.c",
        "http://127.0.0.1:18731/ok#x@y",
        "ftp://files.example.com:21/pub/a@b.txt",
    ],
)
def test_a_url_that_parses_without_userinfo_is_left_whole(url: str) -> None:
    assert redact_url(url) == url


def test_a_backslashed_location_is_read_as_browsers_read_it() -> None:
    assert redact_url("http:\\\\u:pw@h/ok") == "http://u:****@h/ok"


def test_credentials_in_a_query_reach_no_record_field_nor_the_summary(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """A login page's ``?next=http://alice:s3cret@other.test/``, in a redirect's Location
    or in the input: url, final_url, redirects, a Location header and the summary show
    ``alice:****@``. ``input`` (what the user gave) and ``body`` (what the server sent)
    are kept as they are."""
    base = serve(landing_app()).url("")
    masked = "next=http://alice:****@other.test/"
    given = [f"{base}/twice", f"{base}/landing?next={NESTED}", f"{base}/gone?next={NESTED}"]
    result = run_process(
        "--redirects", "--response-headers", "location", "--retries", "0",
        stdin="\n".join(given).encode(),
    )  # fmt: skip
    assert result.returncode == 1  # the 500
    records = jsonl(result.stdout)
    assert [r["final_url"] for r in records] == [
        f"{base}/landing?{masked}",
        f"{base}/landing?{masked}",
        f"{base}/gone?{masked}",
    ]
    assert records[0]["redirects"] == [
        {"status": 302, "url": f"{base}/twice"},
        {"status": 302, "url": f"{base}/login?{masked}"},
    ]
    assert [r["url"] for r in records[1:]] == [f"{base}/landing?{masked}", f"{base}/gone?{masked}"]
    assert [r["input"] for r in records] == given
    shown = json.dumps(
        [{k: v for k, v in r.items() if k not in ("input", "body")} for r in records]
    )
    assert "s3cret" not in shown
    assert f"e.g. {base}/gone?{masked}: 5xx: 500" in result.stderr
    assert "s3cret" not in result.stderr
    # Not followed, the redirect is the answer, and its Location a header of it.
    held = run_process(
        "--max-redirects", "0", "--response-headers", "location", "--fields", "final_url,headers",
        stdin=f"{base}/login".encode(),
    )  # fmt: skip
    assert jsonl(held.stdout) == [
        {"final_url": f"{base}/login", "headers": {"location": f"/landing?{masked}"}}
    ]


@hypothesis.given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
)
@example("")  # nothing to mask
@example("u:p@ss")  # an @ and a colon in the password
@example('a b"<>\\:x')  # what a URL as sent holds only escaped
def test_a_url_as_sent_has_exactly_its_userinfo_masked(userinfo: str) -> None:
    """Whatever a userinfo held as typed, the URL as sent (``sendable``) has it masked
    whole and nothing else touched: the user kept before a colon, all of it otherwise."""
    assume(not any(char in userinfo for char in "/?#") and not _CONTROL.search(userinfo))
    sent = sendable(f"http://{userinfo}@h.test/p@x?q=a@b")
    escaped = sent.removeprefix("http://").rpartition("@h.test/")[0]
    user, colon, _ = escaped.partition(":")
    shown = f"{user}:****" if colon else "****" if escaped else ""
    assert redact_valid(sent) == f"http://{shown}@h.test/p@x?q=a@b"
