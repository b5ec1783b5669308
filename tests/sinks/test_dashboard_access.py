"""Who may open the team board's socket (Origin, Host, token), and a port that is taken, with a
real ``websockets`` client against the real server."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from poserun.cli import main
from poserun.services import demo
from poserun.sinks.base import build_sink
from poserun.sinks.dashboard import DashboardSink
from tests.conftest import PAGE_MS, require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def opens(sink: DashboardSink, *, origin: str | None, query: str = "") -> int:
    """The HTTP status of a WebSocket handshake to the board (101 when it opened and sent the state)."""
    async def go() -> int:
        try:
            async with connect(f"ws://127.0.0.1:{sink.port}/ws{query}", origin=origin,  # type: ignore[arg-type]
                               open_timeout=30) as ws:
                first = json.loads(await ws.recv())
                assert first["type"] == "state"
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code
    return asyncio.run(go())


def serving(**options: Any) -> Iterator[DashboardSink]:
    sink = DashboardSink(port=0, **options)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(sink.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        asyncio.run_coroutine_threadsafe(sink.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@pytest.fixture
def board() -> Iterator[DashboardSink]:
    yield from serving(allowed_origins=["https://coach.example.org"])


@pytest.fixture
def token_board() -> Iterator[DashboardSink]:
    yield from serving(token="s3cret")


def test_a_page_elsewhere_cannot_open_the_socket(board: DashboardSink) -> None:
    own = f"http://127.0.0.1:{board.port}"
    assert opens(board, origin=own) == 101  # the board's own page: Origin is the Host it asked
    assert opens(board, origin="https://coach.example.org") == 101  # allowed_origins
    assert opens(board, origin=None) == 101  # not a browser, no token set: a loopback-only board
    for bad in ("http://evil.example", f"http://localhost:{board.port}", f"http://127.0.0.1:{board.port + 1}",
                "null", "https://coach.example.org:8443", f"http://127.0.0.1:{board.port}/page"):
        assert opens(board, origin=bad) == 403, bad
    assert board.refused == {"origin": 6, "host": 0, "token": 0}
    assert board.connection_stats()["refused_origin"] == 6


def test_with_a_token_the_socket_needs_it_and_the_origin_too(token_board: DashboardSink) -> None:
    own = f"http://127.0.0.1:{token_board.port}"
    assert opens(token_board, origin=None) == 401  # a non-browser client: only with the token
    assert opens(token_board, origin=None, query="?token=s3cret") == 101
    assert opens(token_board, origin=own, query="?token=s3cret") == 101
    assert opens(token_board, origin=own, query="?token=wrong") == 401
    assert opens(token_board, origin=own, query="?token=%C3%A9t%C3%A9") == 401  # not ASCII: refused, not a 500
    assert opens(token_board, origin="http://evil.example", query="?token=s3cret") == 403
    assert token_board.refused == {"origin": 1, "host": 0, "token": 3}


def test_a_dns_rebinding_page_is_refused(board: DashboardSink) -> None:
    def get(host: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=30)
        try:
            conn.request("GET", "/", headers={"Host": host})
            return conn.getresponse().status
        finally:
            conn.close()

    assert get(f"127.0.0.1:{board.port}") == 200 and get(f"localhost:{board.port}") == 200
    assert get(f"evil.example:{board.port}") == 403  # a name that resolves here, but not this machine's
    assert get("coach.example.org") == 200  # an allowed origin's host (a proxy in front)
    assert board.refused["host"] == 1


def test_a_taken_port_is_an_error_that_says_which() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = DashboardSink(port=port)
        with pytest.raises(OSError) as info:
            asyncio.run(sink.start())
    said = str(info.value)
    assert f"port {port} on 127.0.0.1 is already in use" in said and "0: any free port" in said, said
    assert info.value.errno is not None and sink.port == port  # nothing else was taken instead

    async def any_port() -> int:
        free = DashboardSink(port=0)
        await free.start()
        await free.close()
        return free.port
    assert asyncio.run(any_port()) > 0


def test_the_demo_asks_for_a_free_port_when_8765_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    def board_port() -> int:
        spec = next(s for s in demo.demo_settings(None, None).sinks if s.type == "dashboard")
        return int(spec.options["port"])

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(demo, "BOARD_PORT", taken.getsockname()[1])
        assert board_port() == 0  # any free port: the demo's own board always starts
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    monkeypatch.setattr(demo, "BOARD_PORT", free)
    assert board_port() == free


@pytest.mark.parametrize(("options", "needle"), [
    ("{allowed_origins: [coach.example.org]}", "allowed_origins: 'coach.example.org' is not an origin"),
    ("{allowed_origins: 'https://a.example'}", "allowed_origins must be a list"),
    ("{port: 70000}", "port must be 0-65535"),
])
def test_config_check_validates_the_new_options(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                options: str, needle: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sinks:\n  - {{type: dashboard, options: {options}}}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert f"sinks[0] (dashboard): {needle}" in capsys.readouterr().err
    ok = build_sink("dashboard", {"allowed_origins": ["https://coach.example.org", "http://10.0.0.5:8765"],
                                  "port": 0}, {})
    assert isinstance(ok, DashboardSink) and len(ok.allowed_origins) == 2


def test_a_real_browser_page_on_another_origin_is_refused(board: DashboardSink) -> None:
    """Chromium on a page of another port of this machine opens the board's socket: refused, while
    the board's own page gets its state."""
    require(CHROMIUM is not None, "Debian's chromium is not installed (.ci/run installs it)")
    try:
        import playwright.sync_api as playwright
    except ModuleNotFoundError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    script = (f"<script>const ws = new WebSocket('ws://127.0.0.1:{board.port}/ws');"
              "ws.onmessage = () => { document.title = 'opened'; };"
              "ws.onclose = () => { if (document.title !== 'opened') document.title = 'refused'; };</script>")

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = script.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
            page.wait_for_function("document.title !== ''", timeout=PAGE_MS)
            assert page.title() == "refused"
            own = browser.new_page()
            own.goto(f"http://127.0.0.1:{board.port}/")
            own.wait_for_function("document.title.includes('team board')", timeout=PAGE_MS)
            browser.close()
    finally:
        other.shutdown()
    assert board.refused["origin"] == 1
