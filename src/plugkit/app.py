"""The plugin app factory: well-known routes, generated spec, auth on every API operation, CORS, limits, errors."""

from __future__ import annotations

import copy
import functools
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute

from plugkit import metrics, ratelimit
from plugkit.auth.base import AuthMethod
from plugkit.docs import FULL_SPEC_PATH, docs_page, full_openapi, mount_docs
from plugkit.edge import public_base_url
from plugkit.errors import install_error_handlers, with_error_responses
from plugkit.fastpath import FastPaths, derive_all
from plugkit.health import Health, HealthRoutes
from plugkit.logo import render_logo
from plugkit.manifest import Manifest
from plugkit.metrics import MetricsRoute
from plugkit.middleware import (
    BodySizeLimit,
    Cors,
    JsonBodyAnyContentType,
    RateLimit,
    RequestTimeout,
    RequireCredential,
    ResponseSizeLimit,
)
from plugkit.observe import ObserveRequests
from plugkit.settings import PluginSettings
from plugkit.spec import lint_spec, render_spec, to_yaml
from plugkit.storage import Database

log = logging.getLogger("plugkit")

__all__ = ["PluginInfo", "create_plugin_app", "public_base_url"]


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


def create_plugin_app(
    info: PluginInfo,
    routers: Sequence[APIRouter],
    settings: PluginSettings,
    auth: AuthMethod,
    *,
    database: Database | None = None,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> FastAPI:
    """Build a plugin's FastAPI app. Every route of `routers` requires the auth method's credential. `database` is
    where framework state shared by workers lives (the auth method's tables, the request rate counts), created at
    start-up; it may be left out when neither needs one. Each operation's well-formed requests take a fast path
    derived from its route, ahead of FastAPI's routing (see plugkit.fastpath)."""
    framework_tables = [*auth.metadata(), *([ratelimit.metadata] if settings.rate_limit_per_minute > 0 else [])]
    if framework_tables and database is None:
        raise ValueError(f"auth {auth.kind} and the request rate limit keep tables: pass a database")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if database is not None and framework_tables:
            await database.create_all(*framework_tables)
        for hook in on_startup:
            await hook()
        for problem in lint_spec(render_spec(app.openapi(), "http://127.0.0.1")):
            log.warning("spec lint: %s", problem)
        health.phase = "serving"
        try:
            yield
        finally:
            health.phase = "stopping"
            for hook in on_shutdown:
                await hook()
            metrics.worker_stopped()

    app = FastAPI(
        title=info.title,
        version=info.version,
        description=info.description,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.health = health = Health(database)
    app.state.metrics_hooks = metrics_hooks = list[metrics.MetricsHook]()
    protected: set[str] = set()
    guarded: list[APIRoute] = []
    for router in routers:
        protected.update(op for r in router.routes if (op := getattr(r, "operation_id", None)))
        guarded.extend(r for r in router.routes if isinstance(r, APIRoute))
        app.include_router(router)
    for router in auth.routers():
        app.include_router(router)
    protected_ops = frozenset(protected)

    full: list[dict[str, Any]] = []  # built on first use, as app.openapi() is

    # The spec and the manifest depend only on the base URL the request names: rendered once per base URL (a few
    # are kept: a proxy, localhost, an IP), not per request.
    @functools.lru_cache(maxsize=16)
    def rendered_spec(base: str, everything: bool) -> tuple[dict[str, Any], bytes]:
        if everything and not full:
            full.append(full_openapi(app, guarded))
        document = render_spec(
            with_error_responses(
                full[0] if everything else app.openapi(), protected_ops, authenticated=auth.kind != "none"
            ),
            base,
            security_scheme=auth.security_scheme(),
            protected_operations=protected_ops,
        )
        return document, bytes(JSONResponse(document).body)

    @functools.lru_cache(maxsize=16)
    def rendered_manifest(base: str) -> tuple[dict[str, Any], bytes]:
        document = info.manifest.with_base_url(base).to_json()
        document["auth"] = auth.manifest_auth(base).model_dump(mode="json", exclude_none=True)
        return document, bytes(JSONResponse(document).body)

    def spec_for(request: Request, *, everything: bool = False) -> dict[str, Any]:
        return copy.deepcopy(rendered_spec(public_base_url(request, settings), everything)[0])

    def manifest_for(request: Request) -> dict[str, Any]:
        return copy.deepcopy(rendered_manifest(public_base_url(request, settings))[0])

    @app.get("/.well-known/ai-plugin.json", include_in_schema=False)
    async def manifest(request: Request) -> Response:
        return Response(rendered_manifest(public_base_url(request, settings))[1], media_type="application/json")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request) -> Response:
        return Response(rendered_spec(public_base_url(request, settings), False)[1], media_type="application/json")

    @app.get(FULL_SPEC_PATH, include_in_schema=False)
    async def openapi_full_json(request: Request) -> Response:
        return Response(rendered_spec(public_base_url(request, settings), True)[1], media_type="application/json")

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
        return docs_page(f"{info.title}: API")

    mount_docs(app)

    from plugkit.console import Console, console_enabled, mount_console  # the page for people, above the API

    if console_enabled(settings):
        mount_console(app, Console(info.title, settings, auth, manifest_for, spec_for, guarded))
    install_error_handlers(app)
    # The plugin's operations first, as FastAPI matches them (its routers come first), then the app's own routes
    # (manifest, specs, pages) where they qualify.
    own = [r for r in app.routes if isinstance(r, APIRoute)]
    if settings.fast_paths and (fast_paths := derive_all([*guarded, *own])):
        app.add_middleware(
            FastPaths, paths=fast_paths, handlers=app.exception_handlers, overrides=app.dependency_overrides
        )
    app.add_middleware(JsonBodyAnyContentType, routes=guarded)  # outside the fast paths, so they see the same body
    app.add_middleware(RequireCredential, auth=auth, routes=guarded)
    app.add_middleware(ResponseSizeLimit, max_chars=settings.max_response_chars)
    app.add_middleware(RequestTimeout, timeout_s=settings.request_timeout_s)
    app.add_middleware(
        BodySizeLimit,
        default=settings.max_body_bytes,
        overrides=info.body_limits,
        drain_bytes=settings.body_drain_bytes,
        drain_s=settings.body_drain_s,
    )
    app.add_middleware(
        Cors,
        allow_origins=settings.cors_origins,
        allow_origin_regex=settings.cors_origin_regex,
        allow_methods=["*"],
        allow_headers=["*"],
        allow_credentials=True,
        allow_private_network=True,  # Chrome's Private Network Access preflight, sent to plugins on localhost
    )
    if settings.rate_limit_per_minute > 0 and database is not None:
        app.add_middleware(
            RateLimit,
            limiter=ratelimit.RequestRateLimiter(database, settings.rate_limit_per_minute),
            settings=settings,
        )
    app.add_middleware(ObserveRequests, settings=settings, routes=lambda: app.routes)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_middleware(MetricsRoute, token=token, hooks=metrics_hooks)
    app.add_middleware(HealthRoutes, health=health)  # outermost: probes skip every other layer
    return app
