"""`plugkit users create|list`: the people who sign in on the OAuth page."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from plugkit.auth.users import UserStore
from plugkit.cli.common import DataDirOpt, PluginOpt, auth_database, fail

app = typer.Typer(no_args_is_help=True, help="Manage the users who sign in with OAuth.")


def read_password(from_stdin: bool) -> str:
    """The password from standard input (first line) or an interactive prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("standard input is not a terminal: pass --password-stdin")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="The user name to sign in with.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    plugin: PluginOpt = "todo",
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user, or set a new password for an existing one (stored with Argon2id)."""
    password = read_password(password_stdin)

    async def run() -> bool:
        async with auth_database(plugin, data_dir) as database:
            return await UserStore(database).set_password(username, password)

    try:
        created = asyncio.run(run())
    except ValueError as exc:
        fail(str(exc))
        return
    typer.echo(f"{'created user' if created else 'changed the password of'} {username}")


@app.command("list")
def list_users(plugin: PluginOpt = "todo", data_dir: DataDirOpt = None) -> None:
    """List the user names."""

    async def run() -> list[str]:
        async with auth_database(plugin, data_dir) as database:
            return await UserStore(database).list()

    for name in asyncio.run(run()):
        typer.echo(name)
