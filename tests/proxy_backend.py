"""A Centrifugo-style proxy backend for tests: a small Tornado app on a free port
that records every request it gets and answers each endpoint as the test says
(allow, deny with a code, disconnect, a result of its choice, slow, garbage,
another status). `down_url()` names an endpoint nothing listens on.

Endpoints are `/<point>`: connect, refresh, subscribe, sub_refresh, publish, rpc.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from tests.conftest import TIMEOUT_SCALE

__all__ = [
    "POINTS",
    "Answer",
    "ProxyBackend",
    "Received",
    "down_url",
    "self_signed",
    "server_tls",
    "until",
]

POINTS = ("connect", "refresh", "subscribe", "sub_refresh", "publish", "rpc")


@dataclass(frozen=True)
class Received:
    """One request as the backend got it."""

    point: str
    body: Any  # the decoded JSON body
    headers: HTTPHeaders
    peer: Any  # the TCP connection's remote address: one value per connection


@dataclass
class Answer:
    body: bytes = b'{"result": {}}'
    status: int = 200
    hold: asyncio.Event | None = None  # answers only once set: a slow backend
    midway: bool = False  # with `hold`: sends the headers and half the body first
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False  # no Content-Length: the body in chunks


class _Endpoint(RequestHandler):
    def initialize(self, backend: ProxyBackend) -> None:
        self.backend = backend

    async def post(self, point: str) -> None:
        try:
            body = json.loads(self.request.body)
        except ValueError:
            body = self.request.body
        peer = self.request.connection.context.address
        self.backend.received.append(Received(point, body, self.request.headers, peer))
        answer = self.backend.answers.get(point, Answer())
        body = answer.body
        if answer.hold is not None and answer.midway:
            self.set_header("Content-Length", str(len(body)))
            self.write(body[: len(body) // 2])
            await self.flush()
            body = body[len(body) // 2 :]
        if answer.hold is not None:
            await answer.hold.wait()
        self.set_status(answer.status)
        self.set_header("Content-Type", "application/json")
        for name, value in answer.headers:
            self.add_header(name, value)
        if not answer.chunked:
            self.write(body)
            return
        for start in range(0, len(body), 100):
            self.write(body[start : start + 100])
            await self.flush()


class ProxyBackend:
    """Answers `{"result": {}}` (allow) until told otherwise."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, Answer] = {}
        self.port = 0
        self.scheme = "http"
        self._server: HTTPServer | None = None

    def start(self, ssl_options: ssl.SSLContext | None = None) -> None:
        """Listens on a free port of 127.0.0.1 (the current IOLoop serves it)."""
        app = Application([(r"/(\w+)", _Endpoint, {"backend": self})])
        self._server = HTTPServer(app, ssl_options=ssl_options)
        sock, self.port = bind_unused_port()
        self._server.add_socket(sock)
        self.scheme = "https" if ssl_options else "http"

    async def stop(self) -> None:
        for answer in self.answers.values():
            if answer.hold is not None:
                answer.hold.set()
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()

    def url(self, point: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/{point}"

    def endpoints(self) -> dict[str, str]:
        """`[proxy]` keys sending every point here."""
        return {f"{point}_endpoint": self.url(point) for point in POINTS}

    def requests(self, point: str) -> list[Received]:
        return [r for r in self.received if r.point == point]

    def last(self, point: str) -> Received:
        return self.requests(point)[-1]

    # How to answer --------------------------------------------------------------

    def answer(self, point: str, answer: Any, status: int = 200) -> None:
        """Answers `answer` as JSON (bytes as they are)."""
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.answers[point] = Answer(body, status)

    def allow(self, point: str, **result: Any) -> None:
        self.answer(point, {"result": result})

    def deny(self, point: str, code: int, message: str = "", **extra: Any) -> None:
        self.answer(point, {"error": {"code": code, "message": message, **extra}})

    def disconnect(self, point: str, code: int, reason: str = "") -> None:
        self.answer(point, {"disconnect": {"code": code, "reason": reason}})

    def slow(self, point: str, midway: bool = False) -> asyncio.Event:
        """Holds `point`'s answers until the returned event is set (or the backend
        stops); `midway`: after the headers and half the body."""
        hold = asyncio.Event()
        self.answers[point] = Answer(hold=hold, midway=midway)
        return hold


def down_url(point: str = "connect") -> str:
    """An endpoint on a port nothing listens on: connections are refused."""
    sock, port = bind_unused_port()
    sock.close()
    return f"http://127.0.0.1:{port}/{point}"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key: (cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsfan test backend")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "backend.pem", directory / "backend.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
