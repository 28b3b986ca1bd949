"""Fast paths: lean ASGI handlers for a plugin's hottest operations, tried before FastAPI's routing.

For every request FastAPI walks the route's dependencies, parameters and response model in Python; for an operation
whose own work is one SQLite statement that machinery is most of the cost. A fast path answers the plain,
well-formed requests of one operation itself, with the same functions and models as the route, and declines
(returns None) anything else: a query string it does not take, another content type, a body or a path parameter
that does not validate. A declined request takes the route as usual, so every error message still comes from one
place. The route stays the definition of the operation (the spec is generated from it); the plugin's tests check
that both paths give the same answers.

The fast paths sit inside every other layer of the app: limits, CORS, rate limit and the credential check apply to
them as to any route. An HTTPException raised by a handler is answered as the app's handler would answer it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("plugkit")

INTERNAL_ERROR = "internal error; the server log has the cause"

FastHandler = Callable[[Request, "re.Match[str]", bytes], Awaitable[bytes | None]]
"""(request, path match, body) -> the JSON body of a 200 answer, or None to leave the request to the route."""


@dataclass(frozen=True)
class FastPath:
    method: str
    path: re.Pattern[str]  # matched against the whole path
    handler: FastHandler
    reads_body: bool = False


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is plain application/json (a subset of what FastAPI reads as JSON: the rest takes the
    route)."""
    return content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json"


def json_messages(status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    """The two ASGI messages of a JSON response."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    }
    return start, {"type": "http.response.body", "body": body}


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and the messages it came in (to hand them on when the fast path declines)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class FastPaths:
    """ASGI middleware that tries the fast paths before handing a request on to the app."""

    def __init__(self, app: ASGIApp, paths: Sequence[FastPath]) -> None:
        self.app, self.paths = app, tuple(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            for fast in self.paths:
                if fast.method != method or (match := fast.path.fullmatch(path)) is None:
                    continue
                body, messages = b"", list[Message]()
                if fast.reads_body:
                    body, messages = await _read_body(receive)
                    if messages[-1]["type"] != "http.request":  # the client left: let the app see it
                        await self.app(scope, _replay(messages, receive), send)
                        return
                if await self._answer(fast, match, body, scope, receive, send):
                    return
                if messages:
                    receive = _replay(messages, receive)
                break
        await self.app(scope, receive, send)

    async def _answer(
        self, fast: FastPath, match: re.Match[str], body: bytes, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        try:
            answer = await fast.handler(Request(scope, receive), match, body)
        except HTTPException as exc:
            error = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
            await error(scope, receive, send)
            return True
        except Exception as exc:
            log.error("unhandled error on %s %s: %s", scope["method"], scope["path"], type(exc).__name__, exc_info=exc)
            await JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)(scope, receive, send)
            return True
        if answer is None:
            return False
        for message in json_messages(200, answer):
            await send(message)
        return True
