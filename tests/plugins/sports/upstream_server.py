"""The test server of the balldontlie client's tests: `plugkit serve sports-upstream`'s app with failures injected
by request headers. `x-fault: 429*2` answers 429 to the first two requests carrying the same `x-fault-key`,
`x-fault: 503*1` a 503, `x-fault: delay:1500*1` answers the first one 1.5 s late; `x-fault-retry-after` sets the
Retry-After header. `GET /__faults/{key}` tells how many requests a key made.

Run as a uvicorn factory: `python -m uvicorn tests.plugins.sports.upstream_server:create_app --factory`."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.plugins.sports.upstream import create_upstream_app


class FaultInjection:
    """Test-only failures chosen by request headers (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-fault-key")
        if scope["path"].startswith("/__faults/"):
            body = json.dumps({"requests": self.requests[scope["path"].removeprefix("/__faults/")]}).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if key is None:
            await self.app(scope, receive, send)
            return
        self.requests[key] += 1
        what, _, times = headers.get("x-fault", "").partition("*")
        if what and self.requests[key] <= int(times or "1"):
            if what.startswith("delay:"):
                await asyncio.sleep(int(what.removeprefix("delay:")) / 1000)
            else:
                response = JSONResponse(
                    {"error": f"injected {what}"},
                    status_code=int(what),
                    headers={"retry-after": headers["x-fault-retry-after"]} if "x-fault-retry-after" in headers else {},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app() -> FaultInjection:
    """The upstream app (settings from PLUGKIT_* variables) behind the fault injection."""
    return FaultInjection(create_upstream_app())
