"""Unauthenticated operational endpoints: `/healthz` (alive) and `/readyz` (can serve)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from tornado.web import RequestHandler

__all__ = ["Advisory", "HealthHandler", "ReadinessCheck", "ReadyHandler"]

ReadinessCheck = Callable[[], Awaitable[Mapping[str, str] | None]]
"""Raises when a dependency cannot be reached. It may return the state of each of
the dependency's parts (a sharded Redis: each shard's), reported under `shards`."""


class Advisory:
    """A check whose state /readyz reports but which never makes it answer 503
    (MongoDB: fan-out works without it, and the channel log spills meanwhile)."""

    def __init__(self, check: ReadinessCheck) -> None:
        self.check = check

    async def __call__(self) -> Mapping[str, str] | None:
        return await self.check()


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))


class ReadyHandler(RequestHandler):
    """503 with the failing checks named when any required dependency is unreachable
    (an `Advisory` check is reported, never required), and 503 "draining" once
    shutdown has begun (load balancers stop sending clients). Parts reported by
    a check (shards) appear under `shards`, by label."""

    def initialize(
        self,
        checks: dict[str, ReadinessCheck],
        timeout: float = 2.0,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self.checks = checks
        self.timeout = timeout
        self.draining = draining

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def get(self) -> None:
        if self.draining is not None and self.draining():
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "draining"})
            return
        results: dict[str, str] = {}
        parts: dict[str, str] = {}

        async def run(name: str, check: ReadinessCheck) -> None:
            try:
                reported = await asyncio.wait_for(check(), self.timeout)
                parts.update(reported or {})
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready
                results[name] = f"unavailable: {type(exc).__name__}"

        await asyncio.gather(*(run(n, c) for n, c in self.checks.items()))
        ready = all(
            state == "ok"
            for name, state in results.items()
            if not isinstance(self.checks[name], Advisory)
        )
        body: dict[str, Any] = {"status": "ok" if ready else "unavailable", "checks": results}
        if parts:
            body["shards"] = parts
        self._answer(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
