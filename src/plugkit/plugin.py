"""A plugin as a value: its names and descriptions, routes, settings and state; `Plugin.create_app` builds its app.

The factory behind it (`plugkit.app.create_plugin_app`) adds what every plugin gets: the manifest, the generated
spec, the configured auth method, limits, errors and CORS. A `Plugin` fills in the rest: manifest URLs pointing at
the routes the factory serves, a database in the data directory when the plugin or its auth method keeps tables,
the auth method's tables, and the plugin's default port on its settings class.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import create_model
from sqlalchemy import MetaData
from starlette.types import ASGIApp

from plugkit.app import PluginInfo, create_plugin_app
from plugkit.auth.base import AuthMethod
from plugkit.auth.factory import build_auth_method
from plugkit.health import ReadinessCheck, add_readiness_check
from plugkit.manifest import PLUGIN_HOSTNAME, Api, Manifest
from plugkit.metrics import MetricsHook, add_metrics_hook
from plugkit.settings import PluginSettings, load_settings
from plugkit.storage import Database

Hook = Callable[[], Awaitable[None]]
"""A start-up or shutdown step."""
ExceptionHandler = Callable[[Request, Any], Awaitable[Response]]
"""(request, exception) -> the response that answers it."""
F = TypeVar("F", bound=Callable[..., Any])


def model_name(name: str) -> str:
    """A `name_for_model` made from a human name: its letters and digits, lower case (as OpenAI's limits ask)."""
    return re.sub(r"[^a-z0-9]+", "", name.lower()) or "plugin"


class PluginContext:
    """What a plugin's `setup` works with while its app is built: the settings, the auth method and the database,
    and what it adds: routers, start-up and shutdown hooks, middleware, exception handlers and app state.

    `database` is the plugin's database: a SQLite file in the data directory, opened only when a table is
    created or a query runs (or the configured PostgreSQL database, in a schema of the plugin's own); it is closed
    at shutdown. `info` may be changed, e.g. a manifest that depends on a setting."""

    def __init__(
        self, plugin: Plugin, settings: PluginSettings, info: PluginInfo, auth: AuthMethod, database: Database
    ) -> None:
        self.plugin, self.settings, self.info, self.auth, self.database = plugin, settings, info, auth, database
        self.routers: list[APIRouter] = [*plugin.routers, plugin.router]
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []
        self.state: dict[str, Any] = {}
        self.middleware: list[tuple[type[Any], dict[str, Any]]] = []
        self.exception_handlers: dict[type[Exception], ExceptionHandler] = {}
        self.readiness_checks: list[tuple[str, ReadinessCheck]] = []
        self.metrics_hooks: list[MetricsHook] = []

    def on_startup(self, hook: Hook) -> None:
        """Run `hook` at start-up, after the toolkit's and the plugin's tables exist."""
        self.startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Run `hook` at shutdown, before the database closes."""
        self.shutdown.append(hook)

    def add_middleware(self, middleware: Callable[..., ASGIApp], **options: Any) -> None:
        """Wrap the app in an ASGI middleware (outside the toolkit's layers)."""
        self.middleware.append((middleware, options))  # type: ignore[arg-type]

    def add_exception_handler(self, exc: type[Exception], handler: ExceptionHandler) -> None:
        """Answer an exception the plugin raises with `handler`."""
        self.exception_handlers[exc] = handler

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make `/readyz` answer 503 with the check's reason while `check` returns one."""
        self.readiness_checks.append((name, check))

    def add_metrics_hook(self, hook: MetricsHook) -> None:
        """Run `hook` before every scrape of `/metrics` (to bring gauges up to date)."""
        self.metrics_hooks.append(hook)


Setup = Callable[[PluginContext], None]
"""A plugin's `setup`: called with the context while its app is built."""


@dataclass(frozen=True)
class Plugin:
    """A plugin: what the manifest says about it, its routes, its settings, and how its state is built.

    Routes go on `routers`, or on the plugin itself with `@plugin.get(...)`, `@plugin.post(...)` and the like.
    `name` and `description` are the manifest's human fields; the model's fields default to them. `settings` is
    the plugin's settings class (a `PluginSettings`, read from `PLUGKIT_*`), `port` its default port. `tables` are
    created in the plugin's database at start-up; `setup` runs while the app is built (see `PluginContext`)."""

    name: str
    description: str
    description_for_model: str | None = None
    name_for_model: str | None = None
    routers: Sequence[APIRouter] = ()
    settings: type[PluginSettings] = PluginSettings
    port: int | None = None
    tables: Sequence[MetaData] = ()
    setup: Setup | None = None
    database: str | None = None
    contact_email: str | None = None
    title: str | None = None
    version: str = "1.0.0"
    logo_letter: str | None = None
    logo_rgb: tuple[int, int, int] = (52, 101, 164)
    legal_text: str = "This plugin stores only the data you send it, and shares it with no one."
    options: Mapping[str, str] = field(default_factory=dict)
    router: APIRouter = field(default_factory=APIRouter, repr=False)

    # --- routes on the plugin itself ---------------------------------------------------------------------------

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        """Add a GET operation (as `fastapi.APIRouter.get`)."""
        return self.router.get(path, **options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        """Add a POST operation (as `fastapi.APIRouter.post`)."""
        return self.router.post(path, **options)

    def put(self, path: str, **options: Any) -> Callable[[F], F]:
        """Add a PUT operation (as `fastapi.APIRouter.put`)."""
        return self.router.put(path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[F], F]:
        """Add a PATCH operation (as `fastapi.APIRouter.patch`)."""
        return self.router.patch(path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        """Add a DELETE operation (as `fastapi.APIRouter.delete`)."""
        return self.router.delete(path, **options)

    # --- what the plugin is --------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The manifest's `name_for_model`."""
        return self.name_for_model or model_name(self.name)

    @property
    def database_name(self) -> str:
        """Its database: the SQLite file `<data_dir>/<name>.db`, or the schema of that name in PostgreSQL."""
        return self.database or self.model_name

    @cached_property
    def settings_class(self) -> type[PluginSettings]:
        """The settings class, with the plugin's default port."""
        if self.port is None:
            return self.settings
        return create_model(
            self.settings.__name__, __base__=self.settings, __module__=self.settings.__module__, port=(int, self.port)
        )

    def load_settings(self, **overrides: Any) -> PluginSettings:
        """Settings from the environment (`PLUGKIT_*`, `.env`), with explicit overrides (None ones ignored)."""
        return load_settings(self.settings_class, **overrides)

    def open_database(self, settings: PluginSettings) -> Database:
        """The database `plugkit serve` uses with these settings (for its tables, auth state and rate counts)."""
        return Database(settings.database_url_for(self.database_name), schema=self.database_name)

    def manifest(self, settings: PluginSettings) -> Manifest:
        """The manifest, its URLs on the routes the toolkit serves (`PLUGIN_HOSTNAME` is the public base URL)."""
        return Manifest(
            name_for_human=self.name,
            name_for_model=self.model_name,
            description_for_human=self.description,
            description_for_model=self.description_for_model or self.description,
            api=Api(url=f"{PLUGIN_HOSTNAME}/openapi.yaml"),
            logo_url=f"{PLUGIN_HOSTNAME}/logo.png",
            contact_email=self.contact_email or settings.contact_email,
            legal_info_url=f"{PLUGIN_HOSTNAME}/legal",
        )

    def with_setup(self, setup: Setup) -> Plugin:
        """A copy whose app is built with another `setup` (e.g. one given parts to use, in tests)."""
        return replace(self, setup=setup)

    # --- the app -------------------------------------------------------------------------------------------------

    def create_app(self, settings: PluginSettings | None = None, *, auth: AuthMethod | None = None) -> FastAPI:
        """The plugin's app (settings from the environment when none are given; `auth` replaces the configured
        method, for tests)."""
        settings = settings or self.load_settings()
        info = PluginInfo(
            manifest=self.manifest(settings),
            title=self.title or self.name,
            version=self.version,
            description=self.description_for_model or self.description,
            logo_letter=self.logo_letter or self.name[:1].upper() or "P",
            logo_rgb=self.logo_rgb,
            legal_text=self.legal_text,
        )
        database = self.open_database(settings)
        context = PluginContext(self, settings, info, auth or build_auth_method(settings, database), database)
        if self.setup is not None:
            self.setup(context)
        tables = list(self.tables)

        async def startup() -> None:
            if tables:
                await database.create_all(*tables)
            for hook in context.startup:
                await hook()

        async def shutdown() -> None:
            for hook in context.shutdown:
                await hook()
            await database.dispose()

        app = create_plugin_app(
            info,
            context.routers,
            settings,
            context.auth,
            database=database,
            on_startup=[startup],
            on_shutdown=[shutdown],
        )
        for exc, handler in context.exception_handlers.items():
            app.add_exception_handler(exc, handler)
        for middleware, options in context.middleware:
            app.add_middleware(middleware, **options)  # type: ignore[arg-type]
        for name, value in context.state.items():
            setattr(app.state, name, value)
        for name, check in context.readiness_checks:
            add_readiness_check(app, name, check)
        for hook in context.metrics_hooks:
            add_metrics_hook(app, hook)
        app.state.plugin = self
        return app
