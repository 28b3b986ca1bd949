"""The ASGI middlewares every plugin app runs: credential, rate limit, timeout, body and response size limits, JSON
bodies whatever their declared type."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request, params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugkit import metrics, ratelimit
from plugkit.auth.base import AuthMethod
from plugkit.edge import client_address
from plugkit.errors import json_error
from plugkit.settings import PluginSettings

log = logging.getLogger("plugkit")

PUBLIC_PATHS = (
    "/.well-known/ai-plugin.json",
    "/openapi.json",
    "/openapi.yaml",
    "/openapi.full.json",
    "/logo.png",
    "/legal",
    "/docs",
)
DOCS_ASSETS = "/docs/"  # Swagger UI's files (its bundle is over the model host's response limit; no model reads it)


async def admit(auth: AuthMethod, scope: Scope, send: Send) -> bool:
    """Authenticate a request at the ASGI level: put its principal in the request state (where
    `plugkit.deps.get_principal` finds it) and return True; or answer the refusal as JSON with the method's headers
    (a 401's WWW-Authenticate as the method wrote it) and return False."""
    request = Request(scope)
    try:
        principal = await auth.authenticate(request)
    except StarletteHTTPException as exc:
        metrics.count_rejection("auth")
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
            metrics.count_rejection("rate_limit")
            detail = f"more than {self.limiter.per_minute} requests a minute from {address}; retry in {retry_after} s"
            for message in json_error(429, detail, [(b"retry-after", str(retry_after).encode())]):
                await send(message)
            return
        await self.app(scope, receive, send)


def with_vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers with "Origin" added to Vary, as Starlette's CORS middleware adds it: the Vary lines joined
    into one, in the first one's place, else a new line at the end."""
    listed = list(headers)
    varies = [i for i, (name, _) in enumerate(listed) if name == b"vary"]
    if not varies:
        listed.append((b"vary", b"Origin"))
        return listed
    value = b", ".join([*(listed[i][1] for i in varies), b"Origin"])
    rest = set(varies[1:])
    return [(b"vary", value) if i == varies[0] else h for i, h in enumerate(listed) if i not in rest]


class Cors(CORSMiddleware):
    """Starlette's CORS middleware, its preflight and origin rules as they are. A request without `Origin` (no
    browser's cross-origin call: most of them) takes a shorter path to the same answer, Vary gaining "Origin", at a
    third of the cost per request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def vary_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_vary_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, vary_send)


class Deadlines:
    """Cancels tasks that run past `limit_s` from when they were added, on one event loop.

    Every task gets the same limit, so deadlines come in the order tasks are added: one timer, armed for the oldest
    task still running, serves them all. (`asyncio.timeout` arms and cancels a timer of its own for each request:
    about 5 us of the 100 a request takes in a uvloop worker.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit_s: float) -> None:
        self.loop, self.limit_s = loop, limit_s
        self.running: dict[asyncio.Task[Any], float] = {}  # in the order added, so in the order of their deadlines
        self.expired: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[Any]) -> None:
        deadline = self.loop.time() + self.limit_s
        self.running[task] = deadline
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._expire)

    def done(self, task: asyncio.Task[Any], cancelled: bool) -> bool:
        """Forget a task that has finished; whether it ran past its deadline and its cancellation (`cancelled`: a
        CancelledError ended it) was this one's alone, as `asyncio.timeout` tells a TimeoutError."""
        if self.running.pop(task, None) is not None or task not in self.expired:
            return False
        self.expired.discard(task)
        return task.uncancel() == 0 and cancelled

    def _expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.running:
            task, deadline = next(iter(self.running.items()))
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self._expire)
                return
            del self.running[task]
            self.expired.add(task)
            task.cancel()


class RequestTimeout:
    """Ends a request that runs past the limit with a 504 naming it (the model host has given up by then)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s
        self._deadlines: Deadlines | None = None  # of the loop the app runs on (one per worker; tests start others)

    def deadlines(self) -> Deadlines:
        loop = asyncio.get_running_loop()
        if self._deadlines is None or self._deadlines.loop is not loop:
            self._deadlines = Deadlines(loop, self.timeout_s)
        return self._deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task() if scope["type"] == "http" and self.timeout_s > 0 else None
        if task is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        deadlines = self.deadlines()
        deadlines.add(task)
        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not deadlines.done(task, cancelled=True):
                raise
        except BaseException:
            deadlines.done(task, cancelled=False)
            raise
        else:
            deadlines.done(task, cancelled=False)
            return
        log.warning("request %s %s ran past %s s", scope["method"], scope["path"], self.timeout_s)
        if not started:
            for message in json_error(504, f"the request took longer than {self.timeout_s:g} s and was stopped"):
                await send(message)


FRAMED_BY_LENGTH = ("1.1", "1.0")  # HTTP versions whose request body is chunked or as long as declared (RFC 9112 6.3)


class BodySizeLimit:
    """Refuses a request body over the limit with 413, whether it announces its length or streams in chunks.

    After the 413 is sent, the rest of the body is read and dropped, up to `drain_bytes` and `drain_s`, before the
    connection closes (nginx's lingering close): a client that sends its whole body before reading the answer, as
    Python's urllib does, would otherwise find the connection closed under it ("Connection reset by peer") and never
    see the 413."""

    def __init__(
        self,
        app: ASGIApp,
        default: int,
        overrides: dict[str, int] | None = None,
        drain_bytes: int = 256 * 1024 * 1024,
        drain_s: float = 10.0,
    ) -> None:
        self.app, self.default, self.overrides = app, default, overrides or {}
        self.drain_bytes, self.drain_s = drain_bytes, drain_s

    def limit_for(self, path: str) -> int:
        return self.overrides.get(path, self.default)

    async def refuse(self, receive: Receive, send: Send, detail: str, more_body: bool, received: int) -> None:
        """Answer 413 at once, then, before the answer is complete and the connection closes, read and drop what is
        left of the body within the bounds. A client that reads while it sends has its answer at once; one that
        reads only after sending finds the answer waiting."""
        start, body = json_error(413, detail, [(b"connection", b"close")])
        await send(start)
        if not more_body:
            await send(body)
            return
        await send({**body, "more_body": True})
        try:
            async with asyncio.timeout(self.drain_s):
                while more_body and received <= self.drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    received += len(message.get("body", b""))
                    more_body = message.get("more_body", False)
        except TimeoutError:
            pass
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        detail = f"request body is larger than the limit of {limit} bytes"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # A client that waits for "100 Continue" sends no body after a final answer: nothing to drain.
            drain = int(declared) <= self.drain_bytes and headers.get(b"expect", b"").lower() != b"100-continue"
            await self.refuse(receive, send, detail, more_body=drain, received=0)
            return
        framed = declared is None or declared.isdigit()
        if framed and b"transfer-encoding" not in headers and scope.get("http_version") in FRAMED_BY_LENGTH:
            # HTTP/1 reads a body only by its declared length, within the limit here (none declared: no body)
            await self.app(scope, receive, send)
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
                    await self.refuse(receive, send, detail, message.get("more_body", False), received)
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
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(DOCS_ASSETS):
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


def takes_json_body(route: APIRoute) -> bool:
    """Whether a route reads its body as JSON (rather than a form or none)."""
    body = route.dependant.body_params
    return bool(body) and not any(isinstance(param.field_info, params.Form) for param in body)


def _is_json_media_type(content_type: bytes | None) -> bool:
    media = (content_type or b"").partition(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonBodyAnyContentType:
    """A JSON operation reads its body as JSON whatever Content-Type the request declares, or none.

    Clients that exist send JSON without the header or as text/plain (LangChain's OpenAPI callable; the original
    example read bodies with `get_json(force=True)`, so its clients did too), and FastAPI answers them with a baffling
    422. What the strict check guards against is a cross-site request from a browser, which can send text/plain or no
    Content-Type without a CORS preflight; a browser always sends `Origin` on a POST, PUT, PATCH or DELETE, so such a
    request still needs the JSON header and gets a 415 naming it. Forms and bodies declared as JSON pass untouched."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        self.app = app
        self.routes = [(route.path_regex, frozenset(route.methods or ())) for route in routes if takes_json_body(route)]

    def _json_route(self, scope: Scope) -> bool:
        path, method = scope["path"], scope["method"]
        return any(method in methods and regex.match(path) for regex, methods in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            headers = dict(scope["headers"])
            content_type = headers.get(b"content-type")
            if not _is_json_media_type(content_type) and self._json_route(scope):
                if b"origin" in headers:
                    declared = content_type.decode("latin-1") if content_type else "none"
                    detail = f"this operation takes a JSON body: send Content-Type: application/json (got {declared})"
                    for message in json_error(415, detail):
                        await send(message)
                    return
                rest = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
                scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
