"""The `plugkit` command line: one module per command group."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
import typer.core

from plugkit.cli import backup as backup_cmd
from plugkit.cli import call as call_cmd
from plugkit.cli import check as check_cmd
from plugkit.cli import ingest as ingest_cmd
from plugkit.cli import manifest as manifest_cmd
from plugkit.cli import mcp as mcp_cmd
from plugkit.cli import new as new_cmd
from plugkit.cli import oauth_clients as oauth_clients_cmd
from plugkit.cli import plugins as plugins_cmd
from plugkit.cli import serve as serve_cmd
from plugkit.cli import sports as sports_cmd
from plugkit.cli import tokens as tokens_cmd
from plugkit.cli import tools as tools_cmd
from plugkit.cli import users as users_cmd

_argument_type = getattr(typer.core.TyperArgument, "display_type_rich", None)


def _named_argument_type(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    # typer renders a list argument's type as <list[Path]>, and shows it even when a metavar names the argument;
    # with a metavar, the name column says it all (as an option's metavar does in its type column)
    if self.metavar is not None or _argument_type is None:
        return None
    return _argument_type(self, ctx)  # type: ignore[no-any-return]


if _argument_type is not None:  # the typer versions that render types this way
    typer.core.TyperArgument.display_type_rich = _named_argument_type  # type: ignore[method-assign,assignment]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Build, run, check and call LLM AI plugins.")


def installed_version() -> str:
    """plugkit's version as installed (the package metadata), or "unknown" when run from a source tree."""
    try:
        return version("plugkit")
    except PackageNotFoundError:
        return "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"plugkit {installed_version()}")
        raise typer.Exit()


@app.callback()
def root(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print plugkit's version and exit."),
    ] = False,
) -> None:
    """Build, run, check and call LLM AI plugins."""


app.add_typer(serve_cmd.app, name="serve")
app.add_typer(manifest_cmd.app, name="manifest")
app.add_typer(tokens_cmd.app, name="tokens")
app.add_typer(users_cmd.app, name="users")
app.add_typer(oauth_clients_cmd.app, name="oauth-clients")
app.add_typer(sports_cmd.app, name="sports")
app.command("check")(check_cmd.check)
app.command("tools")(tools_cmd.tools)
app.command("call")(call_cmd.call)
app.command("mcp")(mcp_cmd.mcp)
app.command("ingest")(ingest_cmd.ingest)
app.command("plugins")(plugins_cmd.plugins)
app.command("new")(new_cmd.new)
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)


def main() -> None:
    app()
