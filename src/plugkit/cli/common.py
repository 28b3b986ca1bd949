"""Options and helpers shared by the command groups."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from plugkit.auth.tables import metadata as auth_metadata
from plugkit.cli import registry
from plugkit.plugin import Plugin
from plugkit.storage import Database

HostOpt = Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the plugin's database and indexes live (PLUGKIT_DATA_DIR).")
]
AuthOpt = Annotated[str | None, typer.Option("--auth", help="none | service_http | user_http | oauth (PLUGKIT_AUTH).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Worker processes (PLUGKIT_WORKERS).")]
PublicUrlOpt = Annotated[
    str | None, typer.Option("--public-url", help="Base URL the plugin is reached at (PLUGKIT_PUBLIC_URL).")
]
ServiceTokenFileOpt = Annotated[
    Path | None, typer.Option("--service-token-file", help="File holding the service_http token.")
]
AuthSchemeOpt = Annotated[
    str | None,
    typer.Option("--auth-scheme", help="bearer | basic, for service_http and user_http (PLUGKIT_AUTH_SCHEME)."),
]


PluginOpt = Annotated[
    str, typer.Option("--plugin", help="Whose database to act on: a plugin's name or module:attribute.")
]


def load_plugin(name: str) -> Plugin:
    """The plugin the registry finds by name or `module:attribute`; exit 2, listing what exists, when none."""
    try:
        return registry.load(name)
    except registry.UnknownPlugin as exc:
        fail(str(exc))


@asynccontextmanager
async def auth_database(plugin: str, data_dir: Path | None) -> AsyncIterator[Database]:
    """The database `plugkit serve PLUGIN` uses with the same settings, with the auth tables created."""
    found = load_plugin(plugin)
    database = found.open_database(found.load_settings(data_dir=data_dir))
    try:
        await database.create_all(auth_metadata)
        yield database
    finally:
        await database.dispose()


def export_settings(**values: Any) -> None:
    """Pass command-line options to the app factory as PLUGKIT_* environment variables (workers inherit them)."""
    for name, value in values.items():
        if value is None:
            continue
        os.environ[f"PLUGKIT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
