"""`plugkit mcp NAME`: a plugin as an MCP server over stdio, for desktop MCP clients."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import anyio
import typer

from plugkit.cli.common import AuthOpt, DataDirOpt, export_settings, fail, load_plugin
from plugkit.settings import PluginSettings, load_settings

TOKEN_HINTS = {
    "service_http": "<the service token>",
    "user_http": "<a token from: plugkit tokens create --user NAME>",
    "oauth": "<an access token the plugin issued>",
}


def stdio_config(name: str, settings: PluginSettings) -> dict[str, Any]:
    """The desktop-client configuration (`mcpServers`) that starts `plugkit mcp NAME` with these settings as
    written: this Python's absolute path (a client does not search the virtualenv's bin), the absolute data
    directory, and the auth method beside the token it needs, so the token is never sent to a plugin without auth."""
    args = ["-m", "plugkit", "mcp", name, "--data-dir", str(settings.data_dir.resolve()), "--auth", settings.auth]
    server: dict[str, Any] = {"command": sys.executable, "args": args}
    if settings.auth != "none":
        server["env"] = {"PLUGKIT_MCP_TOKEN": TOKEN_HINTS[settings.auth]}
        if settings.auth == "service_http":
            server["env"]["PLUGKIT_SERVICE_TOKEN"] = TOKEN_HINTS["service_http"]
    return {"mcpServers": {name: server}}


def refuse_ignored_token(name: str, auth: str, token: str | None) -> None:
    """A token for a plugin that runs without auth would be silently ignored (and every user's data open): refuse."""
    if token and auth == "none":
        fail(
            f"a token was given (--token or PLUGKIT_MCP_TOKEN) but {name} runs with auth none, which would ignore it; "
            "pass the auth method it was issued under (--auth user_http, service_http or oauth, or PLUGKIT_AUTH)"
        )


def mcp(
    name: Annotated[str, typer.Argument(help="The plugin: a name `plugkit plugins` lists, or module:attribute.")],
    data_dir: DataDirOpt = None,
    auth: AuthOpt = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="PLUGKIT_MCP_TOKEN", help="The credential sent with every call (bearer)."),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the JSON to paste into a desktop MCP client, and exit.")
    ] = False,
) -> None:
    """Serve a plugin's operations as MCP tools over stdin/stdout; calls go through its real API in-process."""
    from plugkit.mcp import serve_stdio

    plugin = load_plugin(name)
    export_settings(data_dir=data_dir, auth=auth)
    if print_config:
        typer.echo(json.dumps(stdio_config(name, load_settings(PluginSettings)), indent=2))
        return
    refuse_ignored_token(name, load_settings(PluginSettings).auth, token)
    app = plugin.create_app()
    if app.state.settings.auth != "none" and not token:
        typer.echo(
            f"warning: {name} runs with auth {app.state.settings.auth} and no --token: calls will be refused", err=True
        )
    anyio.run(lambda: serve_stdio(app, authorization=f"Bearer {token}" if token else None))
