"""Unauthenticated operational endpoints: `/healthz` (alive) and `/readyz` (can serve)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from tornado.web import RequestHandler

__all__ = ["HealthHandler", "ReadinessCheck", "ReadyHandler"]

ReadinessCheck = Callable[[], Awaitable[None]]
"""Raises when a dependency cannot be reached."""


class HealthHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))


class ReadyHandler(RequestHandler):
    """503 with the failing checks named when any dependency is unreachable, and
    503 "draining" once shutdown has begun (load balancers stop sending clients)."""

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

        async def run(name: str, check: ReadinessCheck) -> None:
            try:
                await asyncio.wait_for(check(), self.timeout)
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready
                results[name] = f"unavailable: {type(exc).__name__}"

        await asyncio.gather(*(run(n, c) for n, c in self.checks.items()))
        ready = all(v == "ok" for v in results.values())
        body = {"status": "ok" if ready else "unavailable", "checks": results}
        self._answer(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
