"""``--tls``: the certificate facts of the connection that served each https answer.

Real TLS servers on 127.0.0.1 with trustme certificates: valid, expiring in five days,
expired (read with --insecure), certificates OpenSSL takes and ``cryptography`` cannot
read, and a redirect from one certificate's server to another's over kept-alive
connections.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from conftest import HOST, LoopbackServer, ServerState, jsonl, run_cli, run_process


def _app(state: ServerState) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"x"'})

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def connection(request: web.Request) -> web.Response:
        """The server's own view of the connection: what the client must report."""
        assert request.transport is not None
        ssl_object = request.transport.get_extra_info("ssl_object")
        return web.json_response(
            {"version": ssl_object.version(), "cipher": ssl_object.cipher()[0]}
        )

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/connection", connection)
    app.router.add_get("/304", empty)
    app.router.add_get("/away", away)
    return app


class Servers:
    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA(organization_name="fetchmany test CA")
        self.ca_pem = str(tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_pem)
        now = datetime.now(UTC)
        self.valid = self._serve(self.ca.issue_cert(HOST, "localhost", common_name="valid.test"))
        self.expiring = self._serve(
            self.ca.issue_cert(
                HOST, common_name="expiring.test", not_before=now - timedelta(days=30),
                not_after=now + timedelta(days=5),
            )
        )  # fmt: skip
        self.expired = self._serve(
            self.ca.issue_cert(
                HOST, common_name="expired.test", not_before=now - timedelta(days=30),
                not_after=now - timedelta(hours=36),
            )
        )  # fmt: skip

    def _serve(self, cert: trustme.LeafCert) -> LoopbackServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return LoopbackServer(context, app=_app)

    def close(self) -> None:
        for server in (self.valid, self.expiring, self.expired):
            server.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("tls"))
    yield started
    started.close()


def _records(*urls: str, args: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    result = run_cli("--tls", "-q", *args, stdin="\n".join(urls).encode())
    assert result.returncode in (0, 1), result.stderr
    return jsonl(result.stdout)


def _tls(*urls: str, args: tuple[str, ...] = ()) -> list[dict[str, object]]:
    return [record["tls"] for record in _records(*urls, args=args)]


def test_a_valid_certificate_is_described(servers: Servers) -> None:
    (record,) = _records(servers.valid.url("/connection"), args=("--ca-bundle", servers.ca_pem))
    tls = record["tls"]
    assert isinstance(tls, dict)
    seen_by_server = record["body"]  # a JSON answer is recorded as JSON
    assert {"version": tls["version"], "cipher": tls["cipher"]} == seen_by_server
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    subject = str(tls["subject"])  # RFC 4514: the most specific part first
    assert subject.startswith("CN=valid.test,OU=Testing cert #")
    assert ",O=trustme v" in subject
    assert tls["san"] == [HOST, "localhost"]
    assert str(tls["issuer"]).startswith("OU=Testing CA #")
    assert str(tls["issuer"]).endswith(",O=fetchmany test CA")
    not_after = datetime.strptime(str(tls["not_after"]), "%Y-%m-%dT%H:%M:%SZ")
    not_before = datetime.strptime(str(tls["not_before"]), "%Y-%m-%dT%H:%M:%SZ")
    assert not_before < datetime.now() < not_after
    assert isinstance(tls["days_left"], int)
    assert tls["days_left"] > 365


def test_days_left_is_rounded_down_so_five_days_from_now_is_four(servers: Servers) -> None:
    (tls,) = _tls(servers.expiring.url("/"), args=("--ca-bundle", servers.ca_pem))
    assert isinstance(tls, dict)
    assert tls["days_left"] == 4  # 4 days and some hours left: 4 whole days
    assert "CN=expiring.test" in str(tls["subject"])


def test_an_expired_certificate_is_described_under_insecure(servers: Servers) -> None:
    url = servers.expired.url("/")
    refused = run_cli("--tls", "-q", "--ca-bundle", servers.ca_pem, stdin=url.encode())
    (record,) = jsonl(refused.stdout)
    assert record["error"]["kind"] == "tls"
    assert record["tls"] is None
    (tls,) = _tls(url, args=("--insecure",))
    assert isinstance(tls, dict)
    assert tls["days_left"] == -2  # expired 36 hours ago: negative exactly when expired
    assert "CN=expired.test" in str(tls["subject"])
    assert tls["san"] == [HOST]
    assert tls["not_after"] < datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version_4(der: bytes) -> bytes:
    """The version field says 4 (the value 3): OpenSSL takes it; ``cryptography`` refuses
    it with InvalidVersion, which is not a ValueError."""
    at = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT INTEGER 2: X.509 v3
    return der[:at] + bytes.fromhex("a003020103") + der[at + 5 :]


def _ber_length(der: bytes) -> bytes:
    """The version field's length in long form, which BER allows and DER does not: OpenSSL
    takes it and sends the signed part as it came; ``cryptography`` refuses it (ValueError)."""
    assert der[:2] == der[4:6] == b"\x30\x82"  # the certificate, then its signed part
    assert der[8:10] == b"\xa0\x03"
    whole, signed = (int.from_bytes(der[at : at + 2], "big") + 1 for at in (2, 6))
    return b"".join(
        (b"\x30\x82", whole.to_bytes(2, "big"), b"\x30\x82", signed.to_bytes(2, "big"),
         b"\xa0\x81\x03", der[10:])
    )  # fmt: skip


def _der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


@contextlib.contextmanager
def _serving(der: bytes, key: trustme.Blob, tmp: Path) -> Iterator[LoopbackServer]:
    (tmp / "cert.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    key.write_to_path(str(tmp / "key.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    server = LoopbackServer(context, app=_app)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("odd", [_version_4, _ber_length])
def test_a_certificate_that_cannot_be_read_leaves_its_facts_null_and_the_answer_whole(
    servers: Servers, tmp_path: Path, odd: Callable[[bytes], bytes]
) -> None:
    """The answer arrived: its record is ok, with the connection's protocol and cipher,
    and null for every fact of a certificate that cannot be read."""
    leaf = servers.ca.issue_cert(HOST, common_name="odd.test")
    der = _der(leaf)
    with _serving(odd(der), leaf.private_key_pem, tmp_path) as server:
        (record,) = _records(server.url("/connection"), args=("--insecure",))
    assert (record["ok"], record["error"]) == (True, None)
    assert record["tls"] == {
        **record["body"],  # the version and cipher the server saw
        "subject": None, "san": None, "issuer": None,
        "not_before": None, "not_after": None, "days_left": None,
    }  # fmt: skip


def test_dates_before_the_year_1000_are_written_with_four_digits(
    servers: Servers, tmp_path: Path
) -> None:
    """ISO 8601 as documented, whatever the year: Go's zero time, 0001-01-01, is the
    notBefore of certificates made without one (read here with -k)."""
    leaf = servers.ca.issue_cert(
        HOST, common_name="old.test", not_before=datetime(2050, 1, 1, tzinfo=UTC),
        not_after=datetime(2060, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    der = _der(leaf)
    generalized = b"\x18\x0f20500101000000Z"  # from 2050 on, a date is a GeneralizedTime
    assert der.count(generalized) == 1
    with _serving(
        der.replace(generalized, b"\x18\x0f00010101000000Z"), leaf.private_key_pem, tmp_path
    ) as server:
        (tls,) = _tls(server.url("/"), args=("--insecure",))
    assert isinstance(tls, dict)
    assert (tls["not_before"], tls["not_after"]) == ("0001-01-01T00:00:00Z", "2060-01-01T00:00:00Z")


def test_a_negative_serial_number_is_read_without_a_warning_on_the_terminal(
    servers: Servers, tmp_path: Path
) -> None:
    """RFC 5280 wants a positive serial; some devices' own certificates have 0 or less.
    ``cryptography`` reads them with a warning, which must not reach the user's stderr
    (the installed command, as a user runs it: pytest would capture the warning)."""
    leaf = servers.ca.issue_cert(HOST, common_name="negative.test")
    der = bytearray(_der(leaf))
    serial = der.index(bytes.fromhex("a003020102")) + 5  # the INTEGER after the version
    assert der[serial] == 0x02
    der[serial + 2] = 0x80  # its first byte's top bit: negative, and still DER
    with _serving(bytes(der), leaf.private_key_pem, tmp_path) as server:
        result = run_process("--tls", "-q", "--insecure", stdin=server.url("/").encode())
    assert (result.returncode, result.stderr) == (0, "")
    (record,) = jsonl(result.stdout)
    assert str(record["tls"]["subject"]).startswith("CN=negative.test,")


def test_http_has_null_and_an_answer_without_body_still_has_its_facts(
    servers: Servers, server: LoopbackServer
) -> None:
    plain, empty = _tls(
        server.url("/item?id=1"), servers.valid.url("/304"), args=("--ca-bundle", servers.ca_pem)
    )
    assert plain is None
    assert isinstance(empty, dict)
    assert "CN=valid.test" in str(empty["subject"])


def test_an_http_answer_through_an_https_proxy_has_null_like_any_http_answer(
    servers: Servers,
) -> None:
    """The request goes over TLS, but to the proxy: the proxy's certificate is not the
    answer's. (The valid server stands for the proxy: it answers the absolute-form request
    itself.)"""
    args = ("--proxy", servers.valid.url(""), "--ca-bundle", servers.ca_pem)
    (record,) = _records("http://fetchmany.test/", args=args)
    assert (record["status"], record["body"]) == (200, "hi")  # the proxy's answer
    assert record["tls"] is None


def test_after_a_redirect_the_final_hops_certificate_is_reported_on_kept_alive_connections(
    servers: Servers,
) -> None:
    """Each server is asked first (its connection kept alive), then a redirect goes from
    one to the other on those same connections: every record names the certificate of
    the server that gave its final answer."""
    valid, expiring = servers.valid, servers.expiring
    urls = [
        valid.url("/"),
        expiring.url("/"),
        valid.url("/away?to=" + expiring.url("/")),
        expiring.url("/away?to=" + valid.url("/")),
        valid.url("/"),
    ]
    # --limit 1: one request at a time, so each reuses the connection kept from before.
    facts = _tls(*urls, args=("--ca-bundle", servers.ca_pem, "--limit", "1"))
    names = [str(tls["subject"]).split(",")[0] for tls in facts if isinstance(tls, dict)]
    assert names == [
        "CN=valid.test", "CN=expiring.test", "CN=expiring.test", "CN=valid.test", "CN=valid.test",
    ]  # fmt: skip


def test_tls_goes_in_fields_and_csv_as_json(servers: Servers) -> None:
    result = run_cli(
        "--fields", "url,tls", "-f", "csv", "-q", "--ca-bundle", servers.ca_pem,
        stdin=servers.valid.url("/").encode(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, row = result.text.splitlines()[:2]
    assert header == "url,tls"
    cell = row.split(",", 1)[1]
    assert json.loads(cell.strip('"').replace('""', '"'))["san"] == [HOST, "localhost"]


def test_a_certificate_with_no_alternative_names_has_an_empty_list_of_them() -> None:
    """``san`` is a list (docs/records.md), empty for a certificate without the extension,
    as old and self-made ones are; null is for one that cannot be read."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from fetchmany.fetch.tls import parse_certificate

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-san.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    facts = parse_certificate(certificate.public_bytes(serialization.Encoding.DER))
    assert (facts.subject, facts.san) == ("CN=no-san.test", [])


def test_tls_named_in_fields_turns_the_facts_on(servers: Servers) -> None:
    """--fields url,tls without --tls: the field asked for is filled, as for timings,
    headers and redirects, not left null."""
    url = servers.valid.url("/")
    result = run_cli("-q", "--fields", "url,tls", "--ca-bundle", servers.ca_pem, stdin=url.encode())
    (record,) = jsonl(result.stdout)
    assert list(record) == ["url", "tls"]
    assert isinstance(record["tls"], dict)
    assert record["tls"]["san"] == [HOST, "localhost"]
