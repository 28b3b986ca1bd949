"""Options and helpers shared by the command groups."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

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


def export_settings(**values: Any) -> None:
    """Pass command-line options to the app factory as PLUGKIT_* environment variables (workers inherit them)."""
    for name, value in values.items():
        if value is None:
            continue
        os.environ[f"PLUGKIT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
