"""`plugkit tokens create|list|revoke`: the per-user tokens of `user_http`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from plugkit.auth.bearer import UserTokenStore
from plugkit.cli.common import DataDirOpt, PluginOpt, auth_database, fail

app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke user_http tokens.")


@app.command("create")
def create(
    user: Annotated[str, typer.Option("--user", help="The user the token signs in as.")],
    label: Annotated[str | None, typer.Option("--label", help="A note to recognise the token by.")] = None,
    plugin: PluginOpt = "todo",
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Issue a token for a user; it is printed once, on the last line, and only its hash is kept."""

    async def run() -> tuple[int, str]:
        async with auth_database(plugin, data_dir) as database:
            return await UserTokenStore(database).create(user, label)

    try:
        token_id, token = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps({"id": token_id, "user": user, "token": token}))
    else:
        typer.echo(f"token {token_id} for {user} (shown once; keep it secret):")
        typer.echo(token)


@app.command("list")
def list_tokens(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    plugin: PluginOpt = "todo",
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (ids, users, dates and a fingerprint of the hash; never the tokens)."""

    async def run() -> list[dict[str, object]]:
        async with auth_database(plugin, data_dir) as database:
            found = await UserTokenStore(database).list(user, include_revoked=include_revoked)
        return [
            {
                "id": t.id,
                "user": t.user_id,
                "label": t.label,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                "fingerprint": t.fingerprint,
            }
            for t in found
        ]

    rows = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if rows:
        typer.echo(f"{'id':>5}  {'user':<20} {'created_at':<32}  fingerprint")
    for row in rows:
        revoked = f"  revoked {row['revoked_at']}" if row["revoked_at"] else ""
        typer.echo(f"{row['id']:>5}  {row['user']:<20} {row['created_at']}  {row['fingerprint']}{revoked}")
    typer.echo(f"{len(rows)} tokens")


@app.command("revoke")
def revoke(
    token_id: Annotated[int | None, typer.Argument(help="The id shown by `tokens list`.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Revoke every token of this user.")] = None,
    plugin: PluginOpt = "todo",
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a token by id, or all of a user's tokens; exit 1 when nothing matched."""
    if token_id is None and user is None:
        fail("name a token id or --user")

    async def run() -> int:
        async with auth_database(plugin, data_dir) as database:
            return await UserTokenStore(database).revoke(token_id=token_id, user_id=user)

    count = asyncio.run(run())
    typer.echo(f"revoked {count} tokens")
    if count == 0:
        raise typer.Exit(1)
