"""The plugin app factory: well-known routes, generated spec, auth on every API operation, CORS, limits, errors."""

from __future__ import annotations

import asyncio
import copy
import html
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugkit import ratelimit
from plugkit.auth.base import AuthMethod
from plugkit.fastpath import INTERNAL_ERROR, FastPath, FastPaths, json_messages
from plugkit.logo import render_logo
from plugkit.manifest import Manifest
from plugkit.settings import PluginSettings
from plugkit.spec import iter_operations, lint_spec, render_spec, to_yaml
from plugkit.storage import Database

log = logging.getLogger("plugkit")

PUBLIC_PATHS = ("/.well-known/ai-plugin.json", "/openapi.json", "/openapi.yaml", "/logo.png", "/legal", "/docs")


@dataclass
class PluginInfo:
    """What a plugin tells the factory about itself."""

    manifest: Manifest
    title: str
    version: str = "1.0.0"
    description: str = ""
    logo_letter: str = "P"
    logo_rgb: tuple[int, int, int] = (52, 101, 164)
    legal_text: str = "This plugin stores only the data you send it, and shares it with no one."
    body_limits: dict[str, int] = field(default_factory=dict)


def public_base_url(request: Request, settings: PluginSettings) -> str:
    """The base URL the plugin is reached at: the configured public URL, else the request's own."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme, host = request.url.scheme, request.headers.get("host") or request.url.netloc
    if settings.trust_proxy_headers:
        scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
    return f"{scheme}://{host}"


class ErrorDetail(BaseModel):
    """The body of every error response."""

    detail: str


ERROR_SCHEMA = {
    "title": "ErrorDetail",
    "type": "object",
    "properties": {"detail": {"type": "string", "title": "Detail"}},
    "required": ["detail"],
}
COMMON_ERRORS = {
    "400": "The response would be over the size the model host accepts; ask for less",
    "413": "The request body is over the size limit",
}
AUTH_ERRORS = {"401": "Missing, malformed or wrong credential", "403": "The credential does not reach this resource"}


def with_error_responses(spec: dict[str, Any], operations: frozenset[str], *, authenticated: bool) -> dict[str, Any]:
    """Document the errors the framework itself answers on every API operation (size limits, auth)."""
    spec = copy.deepcopy(spec)
    spec.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorDetail", ERROR_SCHEMA)
    errors = {**COMMON_ERRORS, **(AUTH_ERRORS if authenticated else {})}
    for _path, _method, operation in iter_operations(spec):
        if operation.get("operationId") not in operations:
            continue
        responses = operation.setdefault("responses", {})
        for status, description in errors.items():
            responses.setdefault(
                status,
                {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
                },
            )
    return spec


def create_plugin_app(
    info: PluginInfo,
    routers: Sequence[APIRouter],
    settings: PluginSettings,
    auth: AuthMethod,
    *,
    database: Database,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    fast_paths: Sequence[FastPath] = (),
) -> FastAPI:
    """Build a plugin's FastAPI app. Every route of `routers` requires the auth method's credential. `database` is
    where framework state shared by workers lives (the request rate counts). `fast_paths` answer the plain requests
    of hot operations ahead of FastAPI's routing (see plugkit.fastpath)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.create_all(ratelimit.metadata)
        for hook in on_startup:
            await hook()
        for problem in lint_spec(render_spec(app.openapi(), "http://127.0.0.1")):
            log.warning("spec lint: %s", problem)
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook()

    app = FastAPI(
        title=info.title,
        version=info.version,
        description=info.description,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = auth
    protected: set[str] = set()
    guarded: list[APIRoute] = []
    for router in routers:
        protected.update(op for r in router.routes if (op := getattr(r, "operation_id", None)))
        guarded.extend(r for r in router.routes if isinstance(r, APIRoute))
        app.include_router(router)
    for router in auth.routers():
        app.include_router(router)
    protected_ops = frozenset(protected)

    def spec_for(request: Request) -> dict[str, Any]:
        return render_spec(
            with_error_responses(app.openapi(), protected_ops, authenticated=auth.kind != "none"),
            public_base_url(request, settings),
            security_scheme=auth.security_scheme(),
            protected_operations=protected_ops,
        )

    @app.get("/.well-known/ai-plugin.json", include_in_schema=False)
    async def manifest(request: Request) -> JSONResponse:
        base = public_base_url(request, settings)
        document = info.manifest.with_base_url(base).to_json()
        document["auth"] = auth.manifest_auth(base).model_dump(mode="json", exclude_none=True)
        return JSONResponse(document)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(spec_for(request))

    @app.get("/openapi.yaml", include_in_schema=False)
    async def openapi_yaml(request: Request) -> Response:
        return Response(to_yaml(spec_for(request)), media_type="application/yaml")

    @app.get("/logo.png", include_in_schema=False)
    async def logo() -> Response:
        return Response(render_logo(info.logo_letter, info.logo_rgb), media_type="image/png")

    @app.get("/legal", include_in_schema=False)
    async def legal() -> HTMLResponse:
        name = html.escape(info.manifest.name_for_human)
        body = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{name}: legal</title></head><body>"
            f"<h1>{name}</h1><p>{html.escape(info.legal_text)}</p>"
            f"<p>Contact: <a href='mailto:{html.escape(info.manifest.contact_email)}'>"
            f"{html.escape(info.manifest.contact_email)}</a></p></body></html>"
        )
        return HTMLResponse(body)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{info.title}: API")

    _install_error_handlers(app)
    if fast_paths and settings.fast_paths:
        app.add_middleware(FastPaths, paths=fast_paths)
    app.add_middleware(RequireCredential, auth=auth, routes=guarded)
    app.add_middleware(ResponseSizeLimit, max_chars=settings.max_response_chars)
    app.add_middleware(RequestTimeout, timeout_s=settings.request_timeout_s)
    app.add_middleware(BodySizeLimit, default=settings.max_body_bytes, overrides=info.body_limits)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=settings.cors_origin_regex,
        allow_methods=["*"],
        allow_headers=["*"],
        allow_credentials=True,
        allow_private_network=True,  # Chrome's Private Network Access preflight, sent to plugins on localhost
    )
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimit,
            limiter=ratelimit.RequestRateLimiter(database, settings.rate_limit_per_minute),
            settings=settings,
        )
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = body_parse_detail(exc.__cause__) if exc.status_code == 400 and exc.__cause__ else exc.detail
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _validation_message(e), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


def body_parse_detail(cause: BaseException) -> str:
    """Say why a request body could not be parsed (FastAPI only says that it could not)."""
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply to parse"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8: byte 0x{cause.object[cause.start]:02x} at position {cause.start}"
    return f"the body could not be parsed: {type(cause).__name__}"


def _validation_message(error: Any) -> str:
    message = str(error.get("msg", ""))
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and isinstance(reason, str):
        return f"the body is not valid JSON: {reason}"
    return message


def _json_error(status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    return json_messages(status, json.dumps({"detail": detail}).encode(), headers)


def client_address(scope: Scope, settings: PluginSettings) -> str:
    """The caller's address: the first X-Forwarded-For hop when proxy headers are trusted, else the peer."""
    if settings.trust_proxy_headers:
        forwarded = dict(scope["headers"]).get(b"x-forwarded-for")
        if forwarded:
            return str(forwarded.decode("latin-1")).split(",")[0].strip()
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def admit(
    auth: AuthMethod, scope: Scope, send: Send, challenge: Callable[[Request, str], str] | None = None
) -> bool:
    """Authenticate a request at the ASGI level: put its principal in the request state (where
    `plugkit.deps.get_principal` finds it) and return True; or answer the refusal as JSON with the method's headers
    (a 401's WWW-Authenticate passed through `challenge` when given) and return False."""
    request = Request(scope)
    try:
        principal = await auth.authenticate(request)
    except StarletteHTTPException as exc:
        headers = dict(exc.headers or {})
        if challenge is not None and exc.status_code == 401:
            headers["WWW-Authenticate"] = challenge(request, headers.get("WWW-Authenticate", "Bearer"))
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        for message in _json_error(exc.status_code, str(exc.detail), encoded):
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
            for message in _json_error(429, detail, [(b"retry-after", str(retry_after).encode())]):
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
                for message in _json_error(504, f"the request took longer than {self.timeout_s:g} s and was stopped"):
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
            for message in _json_error(413, detail):
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
                    for error in _json_error(413, detail):
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
                for error in _json_error(400, detail):
                    await send(error)
                return
            assert start is not None
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, guarded_send)
