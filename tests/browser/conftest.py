"""Browser tests: Debian's chromium driven by Playwright against real run.py servers.

Without /usr/bin/chromium or the playwright package these tests are skipped with
the reason shown (`-ra`), never passed. Each page is watched: a JavaScript error,
a console error or a request to anywhere but this machine fails the test.
Screenshots go to tests/screenshots/ (git-ignored).

Playwright's sync API runs its own event loop between calls, so it lives in a
module-scoped fixture and the tests here use no asyncio themselves (the protocol
helpers below use the websockets sync client).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, clean_env, running

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
PAGE_TIMEOUT_MS = 10_000 * TIMEOUT_SCALE
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# What chromium logs as a console error when a WebSocket cannot connect (a server
# that is down on purpose); tests that stop a server allow exactly this.
WS_CONNECT_FAILED = re.compile(
    r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/connection/websocket' failed"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install -e '.[test]')")
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


CHAT_HOOKS = "examples.chat_app:app"  # as `make run` loads them: names from a hook


def backing_env(redis_url: str, mongo_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a server for the pages: the backing servers, its own Redis
    prefix, and the chat demo's hooks (`extra` may replace any of it)."""
    return clean_env(
        REDIS_URL=redis_url,
        MONGO_URL=mongo_url,
        WSFAN_REDIS__PREFIX=prefix,
        WSFAN_LOG__LEVEL="warning",
        **{"WSFAN_APP__HANDLERS": CHAT_HOOKS, **extra},
    )


@pytest.fixture(scope="module")
def cluster_env(redis_url: str, mongo_url: str) -> dict[str, str]:
    """Environment of this module's instances: a Redis key prefix of their own."""
    return backing_env(redis_url, mongo_url, f"browser-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def cluster(
    browser: Any, cluster_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    """Two single-worker instances on one Redis (after `browser`: no servers when skipped)."""
    logs = tmp_path_factory.mktemp("browser-cluster")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running(logs, cluster_env, ("--workers", "1"), name=f"n{i}"))
            for i in range(2)
        ]
        for server in servers:
            server.wait_ready()
        yield servers


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


@dataclass
class Watched:
    """A page and what it did wrong: JS errors, console errors, failed responses,
    requests off this machine."""

    page: Any
    allow_console: tuple[re.Pattern[str], ...] = ()
    problems: list[str] = field(default_factory=list)

    def attach(self) -> None:
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.on("request", self._request)
        self.page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in self.allow_console):
            self.problems.append(f"console error: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _request(self, request: Any) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            self.problems.append(f"request off this machine: {request.url}")


PageOpener = Callable[..., Any]


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[PageOpener]:
    """Opens pages in fresh browser contexts; after the test, each must have had no
    JS error, no console error (except `allow_console` patterns) and no request off
    this machine."""
    watched: list[Watched] = []
    contexts: list[Any] = []

    def open_(
        url: str,
        viewport: dict[str, int] | None = None,
        allow_console: tuple[re.Pattern[str], ...] = (),
    ) -> Any:
        context = browser.new_context(viewport=viewport or DESKTOP, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        w = Watched(page, allow_console)
        w.attach()
        watched.append(w)
        page.goto(url)
        return page

    yield open_
    problems = [p for w in watched for p in w.problems]
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """Saves a page's screenshot as tests/screenshots/<test>-<label>.png."""

    def shoot(page: Any, label: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{request.node.name}-{label}")
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 0
        return path

    return shoot


def join_room(page: Any, name: str, room: str) -> None:
    """Fills the chat's join form and waits until the room is subscribed."""
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join button")
    page.wait_for_selector("#status[data-state=connected]")
    page.wait_for_selector(f"#presence li[data-name='{name}']")


def send(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")
    page.wait_for_function("() => document.getElementById('text').value === ''")


def message_texts(page: Any) -> list[str]:
    return page.eval_on_selector_all("#messages li.msg .text", "els => els.map(e => e.textContent)")


class ProtocolClient:
    """A connection speaking the JSON client protocol with the websockets sync client:
    what another, non-browser client of the same cluster does."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._id = 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, method: params}))
        while True:
            frame = self.ws.recv(timeout=5 * TIMEOUT_SCALE)
            for line in str(frame).split("\n"):
                if line and json.loads(line).get("id") == self._id:
                    reply = json.loads(line)
                    assert "error" not in reply, reply
                    return reply[method]

    def publish(self, channel: str, data: Any) -> None:
        self.call("publish", {"channel": channel, "data": data})

    def history(self, channel: str, limit: int = 100) -> list[dict[str, Any]]:
        """The channel's latest publications, oldest first."""
        return self.call("history", {"channel": channel, "limit": limit}).get("publications", [])


@contextmanager
def protocol_client(server: Server, name: str = "") -> Iterator[ProtocolClient]:
    """A connected ProtocolClient to `server`, closed after; `name` goes in the
    connect data, as the chat page sends it (the chat hook names it so)."""
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.port}/connection/websocket") as ws:
        client = ProtocolClient(ws)
        client.call("connect", {"data": {"name": name}} if name else {})
        yield client


def chat_message(name: str, text: str) -> dict[str, Any]:
    return {"type": "msg", "name": name, "text": text}


@pytest.fixture
def publisher_thread() -> Iterator[Callable[[Server, str, float], threading.Event]]:
    """Starts a client that subscribes to a channel and publishes into it at `rate`/s
    until the returned event is set (or the test ends)."""
    stops: list[tuple[threading.Event, threading.Thread]] = []
    errors: list[BaseException] = []

    def start(server: Server, channel: str, rate: float) -> threading.Event:
        stop = threading.Event()

        def run() -> None:
            try:
                with protocol_client(server, "publisher") as client:
                    client.call("subscribe", {"channel": channel})
                    n = 0
                    while not stop.wait(1 / rate):
                        n += 1
                        client.publish(channel, chat_message("publisher", f"tick {n}"))
            except BaseException as exc:  # reported by the fixture, not lost in the thread
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"publisher-{channel}", daemon=True)
        thread.start()
        stops.append((stop, thread))
        return stop

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(10 * TIMEOUT_SCALE)
    assert not errors, errors
