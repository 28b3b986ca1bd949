"""The `plugkit` command line: one module per command group."""

from __future__ import annotations

import typer

from plugkit.cli import ingest as ingest_cmd
from plugkit.cli import manifest as manifest_cmd
from plugkit.cli import serve as serve_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Build, run, check and call LLM AI plugins.")
app.add_typer(serve_cmd.app, name="serve")
app.add_typer(manifest_cmd.app, name="manifest")
app.command("ingest")(ingest_cmd.ingest)


def main() -> None:
    app()
