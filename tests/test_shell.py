"""How fetchmany sits in a shell: environment variables, completion, proxies, netrc, a real tty."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pexpect
import pytest
from conftest import LoopbackServer, fetchmany_command, run_process


def run_env(
    env: dict[str, str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FETCHMANY_", "_FETCHMANY"))}
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        base.pop(proxy, None)
    return subprocess.run(
        [*fetchmany_command(), *args], input=stdin, capture_output=True, env={**base, **env},
        check=False, timeout=60,
    )  # fmt: skip


def test_options_read_fetchmany_environment_variables(server: LoopbackServer) -> None:
    env = {
        "FETCHMANY_TEMPLATE": server.url("/echo?id={}"),
        "FETCHMANY_HEADER": "X-One: 1\nX-Two: two words",
        "FETCHMANY_FORMAT": "jsonl",
        "FETCHMANY_PICK": "q=query.id",
        "FETCHMANY_QUIET": "1",
        "FETCHMANY_FIELDS": "index,q,body",
    }
    result = run_env(env, stdin=b"5\n")
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert list(record) == ["index", "q", "body"]
    assert record["q"] == "5"
    assert record["body"]["query"]["id"] == "5"
    assert record["body"]["headers"]["X-Two"] == "two words"
    assert result.stderr == b""  # quiet came from the environment too
    bad = run_env({"FETCHMANY_LIMIT": "0"}, stdin=b"")
    assert bad.returncode == 2
    assert b"limit" in bad.stderr.lower()
    flag_wins = run_env({"FETCHMANY_LIMIT": "0"}, "--limit", "3", stdin=b"")
    assert flag_wins.returncode == 0


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated(shell: str) -> None:
    result = run_env({"_FETCHMANY_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0
    assert b"_FETCHMANY_COMPLETE" in result.stdout


def test_bash_completion_completes_options() -> None:
    env = {
        "_FETCHMANY_COMPLETE": "bash_complete",
        "COMP_WORDS": "fetchmany --lim",
        "COMP_CWORD": "1",
    }
    result = run_env(env)
    assert b"--limit" in result.stdout
    env["COMP_WORDS"] = "fetchmany --format "
    env["COMP_CWORD"] = "2"
    assert set(re.findall(rb"plain,(\w+)", run_env(env).stdout)) == {b"jsonl", b"json", b"csv"}


def test_proxy_option_sends_requests_through_the_proxy(server: LoopbackServer) -> None:
    # proxied.test never resolves: only the proxy (the loopback server) is contacted.
    result = run_env({}, "--proxy", server.url(""), "-q", stdin=b"http://proxied.test/echo?a=1\n")
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["ok"] is True
    assert record["body"]["raw_path"] == "http://proxied.test/echo?a=1"
    assert record["body"]["headers"]["Host"] == "proxied.test"


def test_environment_proxies_and_no_proxy_are_honoured(server: LoopbackServer) -> None:
    via_env = run_env({"HTTP_PROXY": server.url("")}, "-q", stdin=b"http://proxied.test/echo\n")
    assert json.loads(via_env.stdout)["body"]["raw_path"] == "http://proxied.test/echo"
    direct = server.url("/echo").encode()
    dead_proxy = {"HTTP_PROXY": "http://127.0.0.1:1"}
    refused = run_env(dead_proxy, "-q", "--retries", "0", stdin=direct)
    assert json.loads(refused.stdout)["error"]["kind"] == "connect"  # it went to the proxy
    bypass = run_env({**dead_proxy, "NO_PROXY": "127.0.0.1"}, "-q", stdin=direct)
    assert json.loads(bypass.stdout)["ok"] is True


def test_netrc_credentials_only_with_the_flag(server: LoopbackServer, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    url = server.url("/echo").encode()
    without = run_env({"NETRC": str(netrc)}, "-q", stdin=url)
    assert "Authorization" not in json.loads(without.stdout)["body"]["headers"]
    with_flag = run_env({"NETRC": str(netrc)}, "--netrc", "-q", stdin=url)
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert json.loads(with_flag.stdout)["body"]["headers"]["Authorization"] == expected
    explicit = run_env({"NETRC": str(netrc)}, "--netrc", "-H", "Authorization: Bearer t", "-q",
                       stdin=url)  # fmt: skip
    assert json.loads(explicit.stdout)["body"]["headers"]["Authorization"] == "Bearer t"


def test_progress_bar_in_a_real_terminal(server: LoopbackServer, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(server.url(f"/sleep?ms=15&id={i}") + "\n" for i in range(120)))
    out = tmp_path / "out.jsonl"
    command = " ".join([*fetchmany_command(), "--limit", "2", str(urls), ">", str(out)])
    child = pexpect.spawn("/bin/sh", ["-c", command], dimensions=(24, 160), timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before.decode("utf-8", "replace")
    assert child.exitstatus == 0, screen
    renders = re.findall(r"(\d+)/120", screen)
    assert len(set(renders)) >= 3  # the bar appeared and updated as records came in
    assert renders[-1] == "120"
    assert "Done. 120 records" in screen
    final_line = screen.rstrip().splitlines()[-1]
    assert "\x1b" not in final_line  # the summary ends clean, no stray sequences
    data = out.read_bytes()
    assert b"\x1b" not in data  # stdout got records only
    assert [json.loads(line)["index"] for line in data.splitlines()] == list(range(120))


def test_no_bar_when_stderr_is_not_a_terminal(server: LoopbackServer) -> None:
    result = run_process(stdin=server.url("/item?id=1").encode())
    assert "\x1b" not in result.stderr
    assert "fetching" not in result.stderr


def test_a_broken_netrc_is_a_usage_error(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine\n")
    result = run_env({"NETRC": str(netrc)}, "--netrc", stdin=b"http://127.0.0.1:1/\n")
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert str(netrc).encode() in result.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_bar_shows_the_limit_in_a_terminal_under_p(
    server: LoopbackServer, tmp_path: Path, processes: str
) -> None:
    """Under -P 2 the bar dropped the limit: the workers' limits now reach the parent a
    few times a second and it shows their total, as one process shows its own."""
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(server.url(f"/sleep?ms=20&id={i}") + "\n" for i in range(150)))
    command = " ".join(
        [*fetchmany_command(), "--limit", "auto", "-P", processes, str(urls), "> /dev/null"]
    )
    child = pexpect.spawn("/bin/sh", ["-c", command], dimensions=(24, 200), timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before.decode("utf-8", "replace")
    assert child.exitstatus == 0, screen
    assert re.search(r"limit \d+", screen), screen
