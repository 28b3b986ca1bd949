"""`plugkit oauth-clients create|list`: the applications (the model host) allowed to ask for tokens."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from plugkit.auth.clients import DEFAULT_REDIRECT_URIS, ClientStore
from plugkit.cli.common import DataDirOpt, PluginOpt, auth_database, fail

app = typer.Typer(no_args_is_help=True, help="Register OAuth clients.")


@app.command("create")
def create(
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            metavar="URI",
            help="An allowed redirect URI, exact or with * for one path segment (repeatable). Default: "
            + ", ".join(DEFAULT_REDIRECT_URIS),
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Shown on the sign-in page.")] = None,
    plugin: PluginOpt = "todo",
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register a client and print its client_id and client_secret (the secret once, on the last line)."""

    async def run() -> tuple[str, str]:
        async with auth_database(plugin, data_dir) as database:
            return await ClientStore(database).create(redirect_uri, name)

    try:
        client_id, secret = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
        return
    uris = list(redirect_uri or DEFAULT_REDIRECT_URIS)
    if as_json:
        typer.echo(json.dumps({"client_id": client_id, "client_secret": secret, "redirect_uris": uris}))
    else:
        typer.echo(f"client_id: {client_id}")
        typer.echo(f"redirect URIs: {', '.join(uris)}")
        typer.echo("client_secret (shown once; keep it secret):")
        typer.echo(secret)


@app.command("list")
def list_clients(plugin: PluginOpt = "todo", data_dir: DataDirOpt = None) -> None:
    """List the registered clients and their redirect URIs."""

    async def run() -> list[tuple[str, list[str]]]:
        async with auth_database(plugin, data_dir) as database:
            return [(c.client_id, c.redirect_uris) for c in await ClientStore(database).list()]

    for client_id, uris in asyncio.run(run()):
        typer.echo(f"{client_id}  {' '.join(uris)}")
