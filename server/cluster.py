"""The cluster as one node sees it, over the broker's control stream.

Promises:
- Every node announces itself (name, version, uptime, counts) on start and
  every `interval` seconds; `nodes()` lists this node (fresh) and every node
  heard from within the last 3 intervals. A node that stops says goodbye and
  is forgotten at once. A node that hears a newcomer announces itself back, so
  a new node knows the cluster within one round trip.
- `command(name, params)` reaches the handler registered with
  `handle_commands` on every node, this one included; each acts on its own
  connections. Survey ops are answered by handlers registered with `answer`
  (the server API registers both; the node knows neither).
- `survey(op, params, timeout)` asks every node (this one included) and
  returns the answers, keyed by node id, once every node known when it was
  asked has answered, or when `timeout` passes (with the answers so far).
- `request(node, op, params, timeout)` asks one node (any node id, known here
  or not) and returns its answer; TimeoutError when none came in time.
- `heard_itself` turns true once this node's own announcement came back
  through the broker: every node sharing it has heard it then (readiness).

Messages are msgpack arrays `[kind, sender id, body]`. A message that cannot be
read is logged and dropped: the control stream is shared, never trusted to crash
a node.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack

from .broker.base import Broker
from .logs import Repeated
from .protocol import Encoding, encode

__all__ = ["Cluster", "CommandHandler", "SurveyHandler"]

log = logging.getLogger(__name__)

ANNOUNCE, LEAVE, COMMAND, SURVEY, SURVEY_REPLY, REQUEST, REQUEST_REPLY = range(7)
NODE_TTL_INTERVALS = 3

SurveyHandler = Callable[[dict[str, Any]], Any]
"""Answers one survey op on this node, from the request's params."""
CommandHandler = Callable[[str, dict[str, Any]], None]
"""Runs one command (name, params) on this node's connections; must not block."""


def _create_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


def _no_command_handler(name: str, params: dict[str, Any]) -> None:
    log.warning("unknown cluster command %r", name)


def _observe(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("goodbye not sent: %r", task.exception())


class _Survey:
    __slots__ = ("answers", "done", "expected")

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.answers: dict[str, Any] = {}
        self.done = asyncio.Event()


class Cluster:
    def __init__(self, broker: Broker, interval: float, repeat_interval: float = 10.0) -> None:
        """Before `start`, the node attaches itself (`attach`) and the layers above it
        register what they run (`handle_commands`, `answer`)."""
        self.uid = str(uuid.uuid4())
        self._announce_log = Repeated(log, repeat_interval)
        self._broker = broker
        self._interval = interval
        self._local_info: Callable[[], dict[str, Any]] = dict
        self._on_command: CommandHandler = _no_command_handler
        self._survey_handlers: dict[str, SurveyHandler] = {}
        self._spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]] = _create_task
        self._nodes: dict[str, tuple[dict[str, Any], float]] = {}  # uid -> (info, expires)
        self._surveys: dict[str, _Survey] = {}
        self._requests: dict[str, asyncio.Future[Any]] = {}
        self.heard_itself = False
        self._announcer: asyncio.Task[None] | None = None
        self._closing = False

    def attach(
        self,
        local_info: Callable[[], dict[str, Any]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        """The node this cluster view belongs to: what it announces about itself, and
        where background work (answers, announcements back) runs."""
        self._local_info = local_info
        self._spawn = spawn

    def handle_commands(self, handler: CommandHandler) -> None:
        """Run `handler(name, params)` for every `command` any node sends (this one
        included); it must not block (spawn the work). Replaces the previous handler."""
        self._on_command = handler

    def answer(self, op: str, handler: SurveyHandler) -> None:
        """Answer survey `op` with `handler(params)`; ops nobody answers get None."""
        self._survey_handlers[op] = handler

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._announcer is None:
            self._closing = False
            self._announcer = asyncio.get_running_loop().create_task(self._announce_forever())

    async def close(self, timeout: float = 2.0) -> None:
        """Stop announcing and say goodbye (best effort: the others forget us anyway).

        Returns within about `timeout` twice over even when the broker hangs or a
        cancellation is lost inside the Redis driver's connect.
        """
        self._closing = True
        announcer, self._announcer = self._announcer, None
        if announcer is None:
            return
        announcer.cancel()
        await asyncio.wait([announcer], timeout=timeout)
        goodbye = asyncio.ensure_future(self._send(LEAVE, {}))
        goodbye.add_done_callback(_observe)
        await asyncio.wait([goodbye], timeout=timeout)
        goodbye.cancel()

    async def _announce_forever(self) -> None:
        while not self._closing:
            await self._announce()
            await asyncio.sleep(self._interval)

    async def _announce(self) -> None:
        try:
            await self._send(ANNOUNCE, self._local_info())
        except Exception as exc:
            self._announce_log("node announcement failed: %s", exc)
        else:
            self._announce_log.recovered("node announcements sent again")

    # Sending -----------------------------------------------------------------

    async def _send(self, kind: int, body: dict[str, Any]) -> None:
        await self._broker.publish_control(encode([kind, self.uid, body], Encoding.MSGPACK))

    async def command(self, name: str, params: dict[str, Any]) -> None:
        """Have every node run `name`; raises when the broker cannot carry it."""
        await self._send(COMMAND, {"name": name, "params": params})

    async def survey(self, op: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Every node's answer to `op`, keyed by node id (see the module's promises)."""
        survey_id = uuid.uuid4().hex
        survey = self._surveys[survey_id] = _Survey({self.uid, *self._live()})
        try:
            await self._send(SURVEY, {"id": survey_id, "op": op, "params": params})
            try:
                await asyncio.wait_for(survey.done.wait(), timeout)
            except TimeoutError:
                missing = survey.expected - set(survey.answers)
                log.warning("survey %r: no answer from %d node(s) in time", op, len(missing))
            return dict(survey.answers)
        finally:
            del self._surveys[survey_id]

    async def request(self, node: str, op: str, params: dict[str, Any], timeout: float) -> Any:
        """Node `node`'s answer to `op` (see the module's promises)."""
        request_id = uuid.uuid4().hex
        answer = self._requests[request_id] = asyncio.get_running_loop().create_future()
        try:
            body = {"id": request_id, "to": node, "op": op, "params": params}
            await self._send(REQUEST, body)
            return await asyncio.wait_for(answer, timeout)
        finally:
            del self._requests[request_id]

    async def check_heard(self) -> None:
        """A readiness check: raises until this node's announcement came back."""
        if not self.heard_itself:
            raise LookupError("this node's announcement has not come back yet")

    def knows(self, node: str) -> bool:
        """Whether `node` is this node or one heard from lately."""
        return node == self.uid or node in self._nodes

    # Receiving ---------------------------------------------------------------

    def handle(self, data: bytes) -> None:
        try:
            kind, sender, body = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(sender, str) or not isinstance(body, dict):
                raise ValueError("malformed envelope")
            self._dispatch(kind, sender, body)
        except Exception as exc:
            log.warning("control message dropped: %r", exc)

    def _dispatch(self, kind: int, sender: str, body: dict[str, Any]) -> None:
        if kind == ANNOUNCE:
            if sender == self.uid:
                self.heard_itself = True
            else:
                known = sender in self._nodes
                self._nodes[sender] = (body, time.monotonic() + self._ttl)
                if not known:
                    self._spawn(self._announce())
        elif kind == LEAVE:
            self._nodes.pop(sender, None)
        elif kind == COMMAND:
            self._on_command(str(body["name"]), dict(body["params"]))
        elif kind == SURVEY:
            self._spawn(self._answer(sender, body))
        elif kind == REQUEST:
            if body.get("to") == self.uid:
                self._spawn(self._answer(sender, body, REQUEST_REPLY))
        elif kind == REQUEST_REPLY:
            answer = self._requests.get(body.get("id", ""))
            if answer is not None and body.get("to") == self.uid and not answer.done():
                answer.set_result(body.get("result"))
        elif kind == SURVEY_REPLY:
            survey = self._surveys.get(body.get("id", ""))
            if survey is not None and body.get("to") == self.uid:
                survey.answers[sender] = body.get("result")
                if survey.expected <= survey.answers.keys():
                    survey.done.set()

    async def _answer(self, sender: str, body: dict[str, Any], kind: int = SURVEY_REPLY) -> None:
        handler = self._survey_handlers.get(body.get("op", ""))
        result = None if handler is None else handler(dict(body.get("params") or {}))
        reply = {"id": body.get("id", ""), "to": sender, "result": result}
        try:
            await self._send(kind, reply)
        except Exception as exc:
            log.warning("survey answer not sent: %s", exc)

    # The view ----------------------------------------------------------------

    @property
    def _ttl(self) -> float:
        return self._interval * NODE_TTL_INTERVALS

    def _live(self) -> list[str]:
        now = time.monotonic()
        for uid in [uid for uid, (_, expires) in self._nodes.items() if expires <= now]:
            del self._nodes[uid]
        return list(self._nodes)

    def nodes(self) -> list[dict[str, Any]]:
        """This node and every live one, each as its announcement with `uid`, by name."""
        nodes = [{**self._local_info(), "uid": self.uid}]
        nodes += [{**self._nodes[uid][0], "uid": uid} for uid in self._live()]
        return sorted(nodes, key=lambda n: (str(n.get("name", "")), n["uid"]))
