"""The ASGI middlewares every plugin app runs: credential, rate limit, timeout, body and response size limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugkit import ratelimit
from plugkit.auth.base import AuthMethod
from plugkit.edge import client_address
from plugkit.errors import json_error
from plugkit.settings import PluginSettings

log = logging.getLogger("plugkit")

PUBLIC_PATHS = ("/.well-known/ai-plugin.json", "/openapi.json", "/openapi.yaml", "/logo.png", "/legal", "/docs")


async def admit(auth: AuthMethod, scope: Scope, send: Send) -> bool:
    """Authenticate a request at the ASGI level: put its principal in the request state (where
    `plugkit.deps.get_principal` finds it) and return True; or answer the refusal as JSON with the method's headers
    (a 401's WWW-Authenticate as the method wrote it) and return False."""
    request = Request(scope)
    try:
        principal = await auth.authenticate(request)
    except StarletteHTTPException as exc:
        headers = dict(exc.headers or {})
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        for message in json_error(exc.status_code, str(exc.detail), encoded):
            await send(message)
        return False
    request.state.principal = principal
    return True


class RequireCredential:
    """Every request to one of the plugin's API routes must carry a credential the auth method accepts.

    Checked before routing, as middleware rather than as a FastAPI dependency of each route: the check is the same,
    at a fraction of a dependency's cost per request. Paths and methods no route serves still get 404 and 405."""

    def __init__(self, app: ASGIApp, auth: AuthMethod, routes: Sequence[APIRoute]) -> None:
        self.app, self.auth = app, auth
        self.routes = [(route.path_regex, frozenset(route.methods or ())) for route in routes]

    def guards(self, scope: Scope) -> bool:
        path, method = scope["path"], scope["method"]
        return any(method in methods and regex.match(path) for regex, methods in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth.kind != "none" and self.guards(scope):
            if not await admit(self.auth, scope, send):
                return
        await self.app(scope, receive, send)


class RateLimit:
    """At most `rate_limit_per_minute` requests per client address, counted in the database (429 past it)."""

    def __init__(self, app: ASGIApp, limiter: ratelimit.RequestRateLimiter, settings: PluginSettings) -> None:
        self.app, self.limiter, self.settings = app, limiter, settings
        self.exempt = frozenset(settings.rate_limit_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = client_address(scope, self.settings) if scope["type"] == "http" else ""
        if scope["type"] != "http" or address in self.exempt:
            await self.app(scope, receive, send)
            return
        allowed, retry_after = await self.limiter.hit(address)
        if not allowed:
            detail = f"more than {self.limiter.per_minute} requests a minute from {address}; retry in {retry_after} s"
            for message in json_error(429, detail, [(b"retry-after", str(retry_after).encode())]):
                await send(message)
            return
        await self.app(scope, receive, send)


class RequestTimeout:
    """Ends a request that runs past the limit with a 504 naming it (the model host has given up by then)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s):  # cancels this task at the deadline; no task per request
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            log.warning("request %s %s ran past %s s", scope["method"], scope["path"], self.timeout_s)
            if not started:
                for message in json_error(504, f"the request took longer than {self.timeout_s:g} s and was stopped"):
                    await send(message)


class BodySizeLimit:
    """Refuses a request body over the limit with 413, whether it announces its length or streams in chunks."""

    def __init__(self, app: ASGIApp, default: int, overrides: dict[str, int] | None = None) -> None:
        self.app, self.default, self.overrides = app, default, overrides or {}

    def limit_for(self, path: str) -> int:
        return self.overrides.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        detail = f"request body is larger than the limit of {limit} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            for message in json_error(413, detail):
                await send(message)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    # Answer now, and tell the app the client has gone so it stops reading.
                    refused = True
                    for error in json_error(413, detail):
                        await send(error)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


class ResponseSizeLimit:
    """Refuses to send a response over `max_chars` characters, which the model host would reject anyway."""

    def __init__(self, app: ASGIApp, max_chars: int) -> None:
        self.app, self.max_chars = app, max_chars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passthrough = False

        async def guarded_send(message: Message) -> None:
            nonlocal start, size, passthrough
            if passthrough:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                declared = headers.get(b"content-length")
                if declared is not None and declared.isdigit() and int(declared) <= self.max_chars:
                    passthrough = True  # a UTF-8 body never has more characters than bytes
                    await send(message)
                    return
                start = message
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            chars = len(body.decode("utf-8", errors="replace")) if size > self.max_chars else size
            if chars > self.max_chars:
                detail = (
                    f"the response would be {chars} characters, over the limit of {self.max_chars} that the model "
                    "host accepts; ask for fewer results"
                )
                for error in json_error(400, detail):
                    await send(error)
                return
            assert start is not None
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, guarded_send)
