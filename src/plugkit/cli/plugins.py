"""`plugkit plugins`: every plugin the commands find by name (built-in or installed through an entry point)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from plugkit.cli import registry


def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the installed plugins: name, where each comes from, its default port and what it does."""
    rows = []
    for entry in registry.installed().values():
        try:
            plugin = registry.load(entry.name)
        except registry.UnknownPlugin as exc:
            rows.append({"name": entry.name, "origin": entry.origin, "reference": entry.reference, "error": str(exc)})
            continue
        port = plugin.settings_class.model_fields["port"].default
        row = {"name": entry.name, "origin": entry.origin, "reference": entry.reference, "port": port}
        rows.append({**row, "description": plugin.description})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        what = row.get("description") or f"cannot load: {row['error']}"
        typer.echo(f"{row['name']:<16} {row.get('port', '-')!s:<6} {row['origin']:<24} {what}")
