"""`plugkit mcp NAME`: a plugin as an MCP server over stdio, for desktop MCP clients."""

from __future__ import annotations

import importlib
from typing import Annotated

import anyio
import typer
from fastapi import FastAPI

from plugkit.cli.common import AuthOpt, DataDirOpt, export_settings, fail


def plugin_factory(name: str) -> FastAPI:
    """Build the app of a plugin named in `plugkit serve`'s table (settings from the environment)."""
    from plugkit.cli.serve import PLUGINS

    if name not in PLUGINS:
        fail(f"no plugin {name!r}; choose one of: {', '.join(PLUGINS)}")
    module, _, attr = PLUGINS[name][0].partition(":")
    app: FastAPI = getattr(importlib.import_module(module), attr)()
    return app


def mcp(
    name: Annotated[str, typer.Argument(help="The plugin: one of those `plugkit serve` runs.")],
    data_dir: DataDirOpt = None,
    auth: AuthOpt = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="PLUGKIT_MCP_TOKEN", help="The credential sent with every call (bearer)."),
    ] = None,
) -> None:
    """Serve a plugin's operations as MCP tools over stdin/stdout; calls go through its real API in-process."""
    from plugkit.mcp import serve_stdio

    export_settings(data_dir=data_dir, auth=auth)
    app = plugin_factory(name)
    if app.state.settings.auth != "none" and not token:
        typer.echo(
            f"warning: {name} runs with auth {app.state.settings.auth} and no --token: calls will be refused", err=True
        )
    anyio.run(lambda: serve_stdio(app, authorization=f"Bearer {token}" if token else None))
