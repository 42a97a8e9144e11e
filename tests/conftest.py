"""Shared fixtures: one real aiohttp server on 127.0.0.1 and a helper that runs the CLI.

The server runs on its own event loop in a thread, so tests that block on a
subprocess (the installed command) and async tests of the library can both use
it. It only ever listens on loopback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

HOST = "127.0.0.1"

# Every property test, unless it says otherwise: judged on its examples, never on how
# fast this machine makes or runs them (a busy 2-core runner, or mutmut's bookkeeping,
# is slower than hypothesis's default deadline and its "input generation is slow").
settings.register_profile(
    "fetchmany-suite", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fetchmany-suite")


@dataclass
class ServerState:
    """What the server saw, for tests to assert on after a run."""

    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    gate_size: int = 0
    gate: asyncio.Event | None = None
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    peers: set[object] = field(default_factory=set)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    hanging_from: int | None = None
    hung: int = 0
    hung_target: int = 0
    hung_signal: threading.Event = field(default_factory=threading.Event)
    release_hangs: asyncio.Event | None = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutmut (it sets MUTANT_UNDER_TEST), tests marked ``speed`` are left out.

    mutmut's bookkeeping slows every call into the mutated modules, and these tests
    judge what --limit auto makes of a live server's answers at the client's own pace:
    slowed, they fail with no mutant in place, and a failure would count as a kill.
    The controller's logic is tested on the simulated clock, which mutmut runs."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    kept = [item for item in items if item.get_closest_marker("speed") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def make_app(state: ServerState) -> web.Application:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        state.requests += 1
        state.arrivals.append((time.monotonic(), request.path_qs))
        if request.transport is not None:
            state.peers.add(request.transport.get_extra_info("peername"))
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await handler(request)
        finally:
            state.in_flight -= 1

    async def item(request: web.Request) -> web.Response:
        """Echo the id after a random delay: completion order differs from request order."""
        delay = float(request.query.get("max_ms", "20")) / 1000
        await asyncio.sleep(random.uniform(0, delay))
        return _json({"id": request.query.get("id"), "path": request.path})

    async def gated(request: web.Request) -> web.Response:
        """Hold each request until ``gate_size`` are in flight at once, then answer.

        A client that never reaches that concurrency leaves the requests waiting
        until its timeout, so the test sees failures instead of a false pass.
        """
        assert state.gate is not None
        if state.in_flight >= state.gate_size:
            state.gate.set()
        await state.gate.wait()
        return _json({"id": request.query.get("id")})

    async def echo(request: web.Request) -> web.Response:
        headers = dict(request.headers)
        state.seen_headers.append(headers)
        return _json(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,  # absolute when the request came via a proxy
                "query": dict(request.query),
                "headers": headers,
                "body": (await request.read()).decode("utf-8", "replace"),
            }
        )

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def latin1(request: web.Request) -> web.Response:
        return web.Response(
            body="café déjà vu".encode("iso-8859-1"),
            headers={"Content-Type": "text/plain; charset=ISO-8859-1"},
        )

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    async def big(request: web.Request) -> web.Response:
        size = int(request.query.get("bytes", "100000"))
        return web.Response(body=b"x" * size, content_type="text/plain")

    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        if hops <= 0:
            return _json({"arrived": True})
        raise web.HTTPFound(f"/redirect/{hops - 1}")

    async def redirect_loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/redirect-loop")

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("ms", "100")) / 1000)
        return _json({"id": request.query.get("id")})

    async def maybe_hang(request: web.Request) -> web.Response:
        """Answer at once, unless hanging is switched on for this id and above."""
        item_id = int(request.query["id"])
        if state.hanging_from is not None and item_id >= state.hanging_from:
            assert state.release_hangs is not None
            state.hung += 1
            if state.hung >= state.hung_target:
                state.hung_signal.set()  # a threading.Event: the test thread waits on it
            await state.release_hangs.wait()
        return _json({"id": item_id})

    async def redirect_to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    app = web.Application(middlewares=[middleware])
    app.router.add_get("/sleep", sleep)
    app.router.add_get("/maybe-hang", maybe_hang)
    app.router.add_get("/redirect-to", redirect_to)
    app.router.add_get("/item", item)
    app.router.add_get("/gated", gated)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/big", big)
    app.router.add_get("/redirect/{hops}", redirect)
    app.router.add_get("/redirect-loop", redirect_loop)
    return app


class LoopbackServer:
    """The test app served from a background thread on 127.0.0.1 and a free port."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        app: Callable[[ServerState], web.Application] | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._make_app = app or make_app
        self.scheme = "https" if ssl_context else "http"
        self.state = ServerState()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        runner = web.AppRunner(
            self._make_app(self.state), handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, ssl_context=self._ssl)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # handlers still hanging on purpose
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{HOST}:{self.port}{path}"

    def reset(self, gate_size: int = 0) -> None:
        """Fresh counters for a test; ``gate_size`` arms the /gated barrier."""

        def do_reset() -> None:
            self.state.in_flight = 0
            self.state.max_in_flight = 0
            self.state.requests = 0
            self.state.seen_headers.clear()
            self.state.peers.clear()
            self.state.arrivals.clear()
            self.state.hanging_from = None
            self.state.hung = 0
            self.state.hung_target = 0
            self.state.hung_signal.clear()
            self.state.release_hangs = asyncio.Event()
            self.state.gate_size = gate_size
            self.state.gate = asyncio.Event()

        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (do_reset(), done.set()))
        done.wait(5)

    def hang_from(self, item_id: int, signal_when_hung: int) -> None:
        """/maybe-hang holds ids >= ``item_id``; ``hung_signal`` is set once that many wait."""
        self.state.hung_target = signal_when_hung
        self.state.hanging_from = item_id

    def stop_hanging(self) -> None:
        self.state.hanging_from = None

        def release() -> None:
            assert self.state.release_hangs is not None
            self.state.release_hangs.set()

        self.loop.call_soon_threadsafe(release)

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(autouse=True)
def _collector_as_python_sets_it() -> Iterator[None]:
    """A run in this process (``run_cli``) tunes the garbage collector as the command
    does (``tune_collector``); the next test gets Python's settings back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.fixture(scope="session")
def _server_instance() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture
def server(_server_instance: LoopbackServer) -> LoopbackServer:
    _server_instance.reset()
    return _server_instance


@pytest.fixture
def serve() -> Iterator[Callable[[web.Application], LoopbackServer]]:
    """Serve a small app of the test's own on 127.0.0.1, for as long as the test runs:
    ``base = serve(app).url("")``. The handlers live beside the assertions."""
    started: list[LoopbackServer] = []

    def start(app: web.Application) -> LoopbackServer:
        server = LoopbackServer(app=lambda state: app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def _other_instance() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture
def other_server(_other_instance: LoopbackServer) -> LoopbackServer:
    """A second server: another origin (same host, another port) for redirect tests."""
    _other_instance.reset()
    return _other_instance


@dataclass
class TlsServer:
    server: LoopbackServer
    ca_pem: str


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """The app over HTTPS with a certificate from a throwaway CA (not trusted by default)."""
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    ca_pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server = LoopbackServer(context)
    server.reset()
    yield TlsServer(server, str(ca_pem))
    server.close()


def fetchmany_command() -> list[str]:
    """The installed console script next to this Python, as a user would run it."""
    script = os.path.join(os.path.dirname(sys.executable), "fetchmany")
    if not os.path.exists(script):
        found = shutil.which("fetchmany")
        if found is None:
            raise RuntimeError("fetchmany is not installed: pip install -e '.[test]'")
        script = found
    return [script]


@dataclass
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode()


def run_process(
    *args: str, stdin: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> CliResult:
    """Run the installed ``fetchmany`` as a process and capture both streams: for what
    needs a real process (pipes, signals, descriptors, limits, a terminal). ``env`` adds
    variables to an environment without any FETCHMANY_* of the caller's."""
    given = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHMANY_")}
    env["COLUMNS"] = "200"
    env.update(given)
    proc = subprocess.run(
        [*fetchmany_command(), *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def run_cli(*args: str, stdin: bytes | None = None) -> CliResult:
    """Run the command in this process, through the same ``main()`` the console script
    calls (errors, exit codes), with stdin, stdout and stderr captured.

    A process costs a quarter of a second to start; most behaviour does not depend on
    one. Environment variables named FETCHMANY_* are hidden, as for ``run_process``.
    """
    from click.testing import CliRunner

    from fetchmany.cli import main

    hidden: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FETCHMANY_")}
    with CliRunner().isolation(input=stdin or b"", env=hidden) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:  # pragma: no cover - main() always exits
            code = 0
        stdout, stderr = out.getvalue(), err.getvalue()
    return CliResult(code, stdout, stderr.decode("utf-8", "replace"))


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
"""Closes, as the server does after every answer: a client must not reuse the socket."""


class RawServer:
    """Answers each request with bytes chosen per path, written to the socket as they are:
    for what aiohttp's server will not send (non-ASCII header bytes, lying lengths).

    ``routes`` maps a request path (with query) to the whole raw response. ``received``
    holds each request's head (request line and headers) as it came off the socket.
    """

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.received: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw server did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.loop.run_forever()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            self.received.append(request)
            path = request.split(b" ", 2)[1].decode("latin-1")
            writer.write(self.routes.get(path, _NOT_FOUND))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(stop()))
        self._thread.join(10)


def raw_response(
    body: bytes = b"", headers: tuple[bytes, ...] = (), status: bytes = b"200 OK"
) -> bytes:
    """A whole HTTP/1.1 response that closes the connection; Content-Length from the body
    unless ``headers`` give one."""
    lines = [b"HTTP/1.1 " + status, b"Connection: close", *headers]
    if not any(h.lower().startswith(b"content-length:") for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.fixture
def raw_server() -> Iterator[Callable[[dict[str, bytes]], RawServer]]:
    """Start raw servers for a test: ``raw_server({"/path": raw_response(...)})``."""
    started: list[RawServer] = []

    def start(routes: dict[str, bytes]) -> RawServer:
        server = RawServer(routes)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose server never answers: the port listens and the kernel
    completes each connection, but nothing ever reads the request or writes a byte."""
    import socket

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(256)
    yield f"http://{HOST}:{listener.getsockname()[1]}/never"
    listener.close()


def jsonl(data: bytes) -> list[dict[str, Any]]:
    """Records of JSON Lines output."""
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture(autouse=True)
def _signal_handlers_as_found() -> Iterator[None]:
    """``main()`` and a run set SIGINT and SIGTERM handlers for the process they expect to
    own; a test running them in this process gets pytest's back afterwards."""
    import signal

    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in kept.items():
        if handler is not None:
            signal.signal(sig, handler)


def in_a_child(work: Callable[[], None], *, as_nobody: bool = False) -> None:
    """Run ``work`` in a child process, to change what only a process may: its limits,
    or, ``as_nobody``, its user (as root, the child becomes nobody, 65534, without
    root's powers; anyone else stays themselves). A fork, not a new interpreter, so
    that nobody need not read the code's own directories."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave, never return into pytest
        code = 1
        try:
            os.close(reader)
            if as_nobody and os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            work()
            code = 0
        except BaseException as exc:
            os.write(writer, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as report:
        failure = report.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, failure
