"""What a load test does: one frozen `Options`, from the command line or from code.

`parse_options(argv)` and `Options(...).checked()` both validate every value and
raise `OptionsError` naming the option at fault; nothing else reads argv.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import random
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..loops import LOOP_CHOICES
from ..prog import prog_name

__all__ = [
    "LAYOUTS",
    "TRANSPORTS",
    "Options",
    "OptionsError",
    "ZipfSampler",
    "build_parser",
    "fd_budget",
    "parse_options",
]

LAYOUTS = ("hot", "channels", "per-client", "zipf")
"""hot: every client on one channel; channels: clients spread over N channels
(client i on channel i mod N); per-client: a channel of its own for each client;
zipf: each client on `channels_per_client` distinct channels of N, drawn from
`seed`, and publications to channels drawn with a Zipf skew over channel rank
(channel 0 the most published to)."""

TRANSPORTS = ("websocket", "sse", "http_stream")
"""How subscribers connect: a WebSocket at the URL; or an HTTP stream at the same
host's `/connection/sse` or `/connection/http_stream`, with `/emulation` for the
commands after connect (see wsfan.loadtest.streams). Publishers stay WebSocket."""

FD_RESERVE = 64  # descriptors a worker keeps for its pipes, loop and imports


class OptionsError(ValueError):
    """An option that cannot be used; the message names it."""


def fd_budget() -> int:
    """Connections one worker process may hold under this process's open-files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - FD_RESERVE, 1)


@dataclass(frozen=True)
class Options:
    """One load test. Rates and counts are totals across every worker process."""

    urls: tuple[str, ...] = ("ws://127.0.0.1:8888/connection/websocket",)
    clients: int = 100
    ramp: float = 0.0  # new connections per second; 0: as fast as the concurrency allows
    connect_concurrency: int = 100  # connection attempts in flight per worker
    connect_timeout: float = 10.0  # per connection, until subscribed
    layout: str = "hot"
    transport: str = "websocket"  # the subscribers' (TRANSPORTS); publishers use WebSocket
    channels: int = 1  # for layouts "channels" and "zipf"
    channels_per_client: int = 5  # for layout "zipf": distinct channels each client joins
    zipf: float = 1.0  # for layout "zipf": exponent s, channel of rank k gets 1/k**s
    seed: int = 0  # for layout "zipf": the clients' channels and the publisher's draws
    channel_prefix: str = "loadtest"
    rates: tuple[float, ...] = (10.0,)  # publications per second, one step each
    duration: float = 10.0  # seconds per rate step
    drain: float = 2.0  # after publishing, stop once nothing arrived for this long
    drain_max: float = 60.0  # and in any case after this long
    publisher: str = "ws"  # "ws": a client publishing; "http": POST {api}/api/publish
    api_url: str = ""  # default: the first URL's host over http
    api_key: str = ""
    publisher_connections: int = 2  # publishing clients (ws) or keep-alive connections (http)
    size: int = 100  # bytes of publication data (timestamp and padding)
    encoding: str = "json"
    loop: str = "auto"  # the generator's event loop: auto (uvloop when installed), asyncio, uvloop
    churn: float = 0.0  # clients per second that disconnect and reconnect with recovery
    churn_downtime: float = 0.5  # seconds a churned client stays away
    token_secret: str = ""  # HS256 secret: connect with a minted token instead of anonymously
    token_ttl: float = 3600.0
    workers: int = 0  # subscriber processes; 0: enough for the open-files limit and the cores
    server_pids: tuple[int, ...] = ()  # processes whose CPU is reported per delivery
    # processes beside the server (a Valkey): their CPU is reported apart from the server's
    broker_pids: tuple[int, ...] = ()
    out: Path | None = None  # JSON result file
    report: Path | None = None  # self-contained HTML report
    progress: bool = True
    label: str = ""  # scenario name carried into the result
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes for the result

    # Derived ------------------------------------------------------------------

    @property
    def channel_count(self) -> int:
        if self.layout == "hot":
            return 1
        if self.layout == "per-client":
            return self.clients
        return self.channels

    def channel_name(self, index: int) -> str:
        return self.channel_prefix if self.layout == "hot" else f"{self.channel_prefix}.{index}"

    def channel_of(self, client: int) -> int:
        """The channel index client `client` (0-based, global) subscribes to
        (the first of them for layout "zipf": see `channels_of`)."""
        if self.layout == "zipf":
            return self.channels_of(client)[0]
        return client % self.channel_count

    def channels_of(self, client: int) -> tuple[int, ...]:
        """Every channel index client `client` subscribes to: one, or for layout
        "zipf" `channels_per_client` distinct ones, the same for the same seed."""
        if self.layout != "zipf":
            return (client % self.channel_count,)
        rng = random.Random(self.seed * 1_000_003 + client)
        return tuple(rng.sample(range(self.channels), self.channels_per_client))

    def channel_picker(self) -> Callable[[int], int]:
        """The channel index of publication number `seq`: round-robin, or for layout
        "zipf" a seeded Zipf draw (ignoring `seq`)."""
        if self.layout == "zipf":
            return ZipfSampler(self.channels, self.zipf, self.seed).sample_ignoring
        count = self.channel_count
        return lambda seq: seq % count

    @property
    def publish_url(self) -> str:
        return self.urls[0]

    @property
    def http_api_url(self) -> str:
        """Base URL of the server HTTP API (`/api/publish` is appended)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        parts = urlsplit(self.urls[0])
        scheme = "https" if parts.scheme == "wss" else "http"
        return urlunsplit((scheme, parts.netloc, "", "", ""))

    @property
    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        by_files = math.ceil(self.clients / fd_budget())
        by_cores = min(os.cpu_count() or 1, math.ceil(self.clients / 2000))
        return max(by_files, by_cores, 1)

    def shares(self) -> list[range]:
        """Global client indices per worker: contiguous, sizes differing by at most one."""
        count = min(self.worker_count, self.clients) or 1
        base, rest = divmod(self.clients, count)
        out, start = [], 0
        for i in range(count):
            size = base + (1 if i < rest else 0)
            out.append(range(start, start + size))
            start += size
        return out

    @property
    def total_seconds(self) -> float:
        return self.duration * len(self.rates)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["urls"] = list(self.urls)
        d["rates"] = list(self.rates)
        d["server_pids"] = list(self.server_pids)
        d["broker_pids"] = list(self.broker_pids)
        d["out"] = str(self.out) if self.out else None
        d["report"] = str(self.report) if self.report else None
        d["token_secret"] = "***" if self.token_secret else ""
        d["api_key"] = "***" if self.api_key else ""
        d["workers"] = self.worker_count
        return d

    # Validation -----------------------------------------------------------------

    def checked(self) -> Options:
        """This object, or OptionsError naming the first option out of range."""
        if not self.urls:
            raise OptionsError("--url: at least one WebSocket URL")
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise OptionsError(f"--url: {url!r} is not a ws:// or wss:// URL")
        _at_least("--clients", self.clients, 1)
        _at_least("--ramp", self.ramp, 0)
        _at_least("--connect-concurrency", self.connect_concurrency, 1)
        _positive("--connect-timeout", self.connect_timeout)
        if self.layout not in LAYOUTS:
            raise OptionsError(f"--layout: one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        _at_least("--channels", self.channels, 1)
        if self.layout == "channels" and self.channels > self.clients:
            raise OptionsError("--channels: more channels than clients leaves some empty")
        if self.layout == "zipf":
            if (
                not isinstance(self.channels_per_client, int)
                or not 1 <= self.channels_per_client <= self.channels
            ):
                raise OptionsError(
                    f"--channels-per-client: between 1 and --channels ({self.channels}), "
                    f"not {self.channels_per_client!r}"
                )
            _positive("--zipf", self.zipf)
            if math.isinf(self.zipf):
                raise OptionsError(f"--zipf: a finite positive number, not {self.zipf!r}")
            if not isinstance(self.seed, int):
                raise OptionsError(f"--seed: an integer, not {self.seed!r}")
            if self.transport != "websocket":
                raise OptionsError("--layout: zipf subscribes over --transport websocket only")
        if not self.channel_prefix or any(c.isspace() for c in self.channel_prefix):
            raise OptionsError("--channel-prefix: a non-empty name without whitespace")
        if not self.rates:
            raise OptionsError("--rate: at least one rate")
        for rate in self.rates:
            _at_least("--rate", rate, 0)
        _positive("--duration", self.duration)
        _at_least("--drain", self.drain, 0)
        _at_least("--drain-max", self.drain_max, self.drain)
        if self.publisher not in ("ws", "http"):
            raise OptionsError(f"--publisher: 'ws' or 'http', not {self.publisher!r}")
        if self.publisher == "http":
            parts = urlsplit(self.http_api_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise OptionsError(f"--api-url: {self.api_url!r} is not an http(s) URL")
        _at_least("--publisher-connections", self.publisher_connections, 1)
        _at_least("--size", self.size, 0)
        if self.encoding not in ("json", "msgpack"):
            raise OptionsError(f"--encoding: 'json' or 'msgpack', not {self.encoding!r}")
        if self.transport not in TRANSPORTS:
            raise OptionsError(
                f"--transport: one of {', '.join(TRANSPORTS)}, not {self.transport!r}"
            )
        if self.transport != "websocket" and self.encoding != "json":
            raise OptionsError(f"--transport: {self.transport} speaks JSON only")
        if self.loop not in LOOP_CHOICES:
            raise OptionsError(f"--loop: one of {', '.join(LOOP_CHOICES)}, not {self.loop!r}")
        _at_least("--churn", self.churn, 0)
        _at_least("--churn-downtime", self.churn_downtime, 0)
        _positive("--token-ttl", self.token_ttl)
        _at_least("--workers", self.workers, 0)
        budget = fd_budget()
        if max(len(r) for r in self.shares()) > budget:
            raise OptionsError(
                f"--workers: {self.workers} processes would each hold more than "
                f"{budget} connections, past the open-files limit; use more workers"
            )
        return self


class ZipfSampler:
    """Ranks 0..n-1 drawn with probability proportional to 1/(rank+1)**s, from
    precomputed cumulative weights and bisect, reproducible from `seed`."""

    def __init__(self, n: int, s: float, seed: int = 0) -> None:
        if n < 1 or not s > 0:
            raise ValueError("ZipfSampler: n >= 1 and s > 0")
        self.cumulative: list[float] = []
        total = 0.0
        for rank in range(1, n + 1):
            total += rank**-s
            self.cumulative.append(total)
        self.total = total
        self._random = random.Random(seed).random

    def probability(self, rank: int) -> float:
        """The chance of drawing `rank` (0-based)."""
        below = self.cumulative[rank - 1] if rank else 0.0
        return (self.cumulative[rank] - below) / self.total

    def sample(self) -> int:
        # min(): a draw of exactly total (rounding) stays on the last rank
        point = self._random() * self.total
        return min(bisect.bisect_right(self.cumulative, point), len(self.cumulative) - 1)

    def sample_ignoring(self, _seq: int) -> int:
        return self.sample()


def _at_least(name: str, value: float, lo: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < lo:
        raise OptionsError(f"{name}: at least {lo:g}, not {value!r}")


def _positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise OptionsError(f"{name}: a positive number, not {value!r}")


# Command line -------------------------------------------------------------------


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog=prog_name("loadtest"),
        description=(
            "Drive a server speaking the Centrifugo client protocol (wsfan or Centrifugo) "
            "with many simulated clients and report delivery latency and throughput."
        ),
    )
    p.add_argument(
        "--url",
        action="append",
        dest="urls",
        help=f"WebSocket endpoint; repeat to spread clients over several (default {d.urls[0]})",
    )
    p.add_argument("-c", "--clients", type=int, default=d.clients, help="subscribing clients")
    p.add_argument(
        "--ramp", type=float, default=d.ramp, help="new connections per second (0: no limit)"
    )
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=d.connect_concurrency,
        help="connection attempts in flight per worker process",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=d.connect_timeout,
        help="seconds for one client to connect and subscribe",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=d.layout,
        help="hot: one channel for all; channels: spread over --channels; "
        "per-client: one channel each; zipf: --channels-per-client of --channels each, "
        "publications Zipf-skewed over channel rank",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=d.transport,
        help="how subscribers connect: websocket (--url), or sse / http_stream at the same "
        "host's /connection/sse or /connection/http_stream with /emulation (JSON only); "
        "publishers stay WebSocket",
    )
    p.add_argument(
        "--channels", type=int, default=d.channels, help="for --layout channels and zipf"
    )
    p.add_argument(
        "--channels-per-client",
        type=int,
        default=d.channels_per_client,
        help="for --layout zipf: distinct channels each client subscribes to, on its one "
        "connection, drawn from --seed",
    )
    p.add_argument(
        "--zipf",
        type=float,
        default=d.zipf,
        help="for --layout zipf: exponent s; the channel of rank k gets a share 1/k**s "
        "of the publications (channel 0 the most)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="for --layout zipf: seed of the clients' channels and the publisher's draws",
    )
    p.add_argument(
        "--channel-prefix",
        default=d.channel_prefix,
        help="channel name (hot) or prefix of PREFIX.N (its namespace must allow publishing "
        "for the ws publisher)",
    )
    p.add_argument(
        "-r",
        "--rate",
        type=_rates,
        default=d.rates,
        dest="rates",
        help="publications per second; a comma list is a ramp, one step per rate",
    )
    p.add_argument("-d", "--duration", type=float, default=d.duration, help="seconds per step")
    p.add_argument(
        "--drain",
        type=float,
        default=d.drain,
        help="after publishing, stop once no delivery or acknowledgement came for this long",
    )
    p.add_argument("--drain-max", type=float, default=d.drain_max, help="longest drain")
    p.add_argument(
        "--publisher",
        choices=("ws", "http"),
        default=d.publisher,
        help="ws: clients sending publish; http: POST {api-url}/api/publish",
    )
    p.add_argument(
        "--api-url", default=d.api_url, help="server HTTP API base URL (default: from --url)"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("WSFAN_LOADTEST_API_KEY", ""),
        help="X-API-Key for --publisher http (env WSFAN_LOADTEST_API_KEY)",
    )
    p.add_argument(
        "--publisher-connections",
        type=int,
        default=d.publisher_connections,
        help="WebSocket publishing clients, or HTTP keep-alive connections",
    )
    p.add_argument("--size", type=int, default=d.size, help="bytes of publication data")
    p.add_argument(
        "--encoding",
        choices=("json", "msgpack"),
        default=d.encoding,
        help="msgpack: the msgpack WebSocket subprotocol",
    )
    p.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default=d.loop,
        help="the generator's event loop (auto: uvloop when installed)",
    )
    p.add_argument(
        "--churn", type=float, default=d.churn, help="reconnections with recovery per second"
    )
    p.add_argument(
        "--churn-downtime",
        type=float,
        default=d.churn_downtime,
        help="seconds a churned client stays away",
    )
    p.add_argument(
        "--token-secret",
        default=os.environ.get("WSFAN_LOADTEST_TOKEN_SECRET", ""),
        help="HS256 secret to mint connection tokens, sub=loadtest-N "
        "(env WSFAN_LOADTEST_TOKEN_SECRET; default: connect anonymously)",
    )
    p.add_argument("--token-ttl", type=float, default=d.token_ttl, help="token lifetime, seconds")
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="subscriber processes; 0: enough for the open-files limit and the cores",
    )
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        dest="server_pids",
        help="a server process (run.py, its supervisor with --workers) to report CPU and "
        "memory for; followed to its workers and embedded servers (repeatable)",
    )
    p.add_argument(
        "--broker-pid",
        type=int,
        action="append",
        dest="broker_pids",
        help="a broker or store process beside the server (Valkey, Redis, MongoDB): its CPU "
        "is reported apart from the server's, as an embedded server's (repeatable)",
    )
    p.add_argument("-o", "--out", type=Path, help="JSON result file")
    p.add_argument("--report", type=Path, help="self-contained HTML report")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    p.add_argument("--label", default="", help="a name carried into the result")
    return p


def parse_options(argv: list[str]) -> Options:
    """Options from command-line arguments; OptionsError for a value out of range."""
    ns = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(ns).items() if k != "quiet" and v is not None}
    values["urls"] = tuple(ns.urls or Options.urls)
    values["server_pids"] = tuple(ns.server_pids or ())
    values["broker_pids"] = tuple(ns.broker_pids or ())
    values["progress"] = not ns.quiet
    return replace(Options(), **values).checked()
