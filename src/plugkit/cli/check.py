"""`plugkit check SOURCE [--strict] [--json]`: every problem a model host would hit with a plugin."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from plugkit.cli import common, registry
from plugkit.host.check import check_plugin
from plugkit.host.loader import load_plugin
from plugkit.manifest import Mode, has_errors

SourceArg = Annotated[
    str,
    typer.Argument(
        help="The plugin's base URL, its manifest (URL or file), a spec alone (URL or file), or the name (or "
        "module:attribute) of a plugin running on this machine with its settings."
    ),
]
SpecOpt = Annotated[
    str | None, typer.Option("--spec", help="Load the spec from here instead of the manifest's api.url.")
]


def running_plugin_url(source: str) -> str:
    """A URL or file stays as it is; a registered plugin name or `module:attribute` becomes the base URL that
    `plugkit serve` gives it with the same settings (PLUGKIT_* variables and `.env`)."""
    path = Path(source)
    if "://" in source or path.is_file() or (path / ".well-known" / "ai-plugin.json").is_file():
        return source
    if not registry.is_reference(source) and source not in registry.installed():
        return source
    settings = common.load_plugin(source).load_settings()
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def check(
    source: SourceArg,
    strict: Annotated[bool, typer.Option("--strict", help="Check the manifest against OpenAI's documented limits.")] = (
        False
    ),
    spec: SpecOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fetch a plugin's manifest and spec as a host does and report every problem; exit 1 on errors."""
    plugin = asyncio.run(load_plugin(running_plugin_url(source), spec_source=spec))
    mode: Mode = "strict" if strict else "default"
    problems = check_plugin(plugin, mode)
    errors = sum(p.level == "error" for p in problems)
    if as_json:
        report = {
            "source": source,
            "manifest": plugin.manifest_location,
            "spec": plugin.spec_location,
            "mode": mode,
            "ok": not has_errors(problems),
            "errors": errors,
            "warnings": len(problems) - errors,
            "problems": [{"level": p.level, "field": p.field, "message": p.message} for p in problems],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"manifest: {plugin.manifest_location or '-'}\nspec:     {plugin.spec_location or '-'}")
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{errors} errors, {len(problems) - errors} warnings ({mode} mode)")
    raise typer.Exit(1 if has_errors(problems) else 0)
