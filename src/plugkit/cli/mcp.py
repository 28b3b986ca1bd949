"""`plugkit mcp NAME`: a plugin as an MCP server over stdio, for desktop MCP clients."""

from __future__ import annotations

from typing import Annotated

import anyio
import typer

from plugkit.cli.common import AuthOpt, DataDirOpt, export_settings, load_plugin


def mcp(
    name: Annotated[str, typer.Argument(help="The plugin: a name `plugkit plugins` lists, or module:attribute.")],
    data_dir: DataDirOpt = None,
    auth: AuthOpt = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="PLUGKIT_MCP_TOKEN", help="The credential sent with every call (bearer)."),
    ] = None,
) -> None:
    """Serve a plugin's operations as MCP tools over stdin/stdout; calls go through its real API in-process."""
    from plugkit.mcp import serve_stdio

    plugin = load_plugin(name)
    export_settings(data_dir=data_dir, auth=auth)
    app = plugin.create_app()
    if app.state.settings.auth != "none" and not token:
        typer.echo(
            f"warning: {name} runs with auth {app.state.settings.auth} and no --token: calls will be refused", err=True
        )
    anyio.run(lambda: serve_stdio(app, authorization=f"Bearer {token}" if token else None))
