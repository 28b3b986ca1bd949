"""Liveness and readiness: `/healthz` (the process answers) and `/readyz` (the app can serve: its database answers
and every readiness check a plugin registered passes).

Both are answered ahead of every other layer of the app (no spec entry, no credential, no rate limit, no request
log line), since a load balancer or Kubernetes asks for them every few seconds. A plugin registers what its
readiness depends on with `add_readiness_check(app, name, check)`; the toolkit knows no plugin.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.errors import json_messages
from plugkit.storage import Database

log = logging.getLogger("plugkit")

HEALTH_PATH, READY_PATH = "/healthz", "/readyz"

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""A readiness check: None when ready, else the reason it is not (e.g. "the vector index is loading")."""

CHECK_TIMEOUT_S = 2.0  # a check that takes longer counts as failing: the probe itself must stay cheap


class Health:
    """The app's readiness: its lifecycle phase, its database, and the checks plugins registered."""

    def __init__(self, database: Database | None) -> None:
        self.database = database
        self.checks: dict[str, ReadinessCheck] = {}
        self.phase = "starting"  # starting | serving | stopping

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    async def _database(self) -> str | None:
        assert self.database is not None
        await self.database.ping()
        return None

    async def reasons(self) -> dict[str, str]:
        """Why the app is not ready, by check name; empty when it is."""
        if self.phase != "serving":
            return {"lifecycle": "the server is starting" if self.phase == "starting" else "the server is stopping"}
        checks = dict(self.checks)
        if self.database is not None:
            checks = {"database": self._database, **checks}
        names = list(checks)
        results = await asyncio.gather(
            *(asyncio.wait_for(checks[name](), CHECK_TIMEOUT_S) for name in names), return_exceptions=True
        )
        reasons: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, TimeoutError):
                reasons[name] = f"no answer within {CHECK_TIMEOUT_S:g} s"
            elif isinstance(result, BaseException):
                reasons[name] = f"{type(result).__name__}: {result}"
            elif result is not None:
                reasons[name] = result
        return reasons


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Make `/readyz` answer 503 with the check's reason while `check` returns one."""
    health: Health = app.state.health
    health.add(name, check)


class HealthRoutes:
    """Answers `/healthz` and `/readyz` before anything else runs."""

    def __init__(self, app: ASGIApp, health: Health) -> None:
        self.app, self.health = app, health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (HEALTH_PATH, READY_PATH) or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status, body = 200, dict[str, Any](status="ok")
        if scope["path"] == READY_PATH:
            reasons = await self.health.reasons()
            status, body = (503, {"status": "not ready", "reasons": reasons}) if reasons else (200, {"status": "ready"})
        for message in json_messages(status, json.dumps(body).encode(), [(b"cache-control", b"no-store")]):
            await send(message)
