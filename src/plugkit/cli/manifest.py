"""`plugkit manifest validate FILE_OR_URL [--strict]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer

from plugkit.host.loader import manifest_url
from plugkit.manifest import has_errors, load_manifest_document, validate_manifest

app = typer.Typer(no_args_is_help=True, help="Work with ai-plugin.json manifests.")


def read_source(source: str, timeout: float = 15.0) -> str:
    """The text of a local file or an http(s) URL (a plugin's base URL reads its /.well-known/ai-plugin.json)."""
    if source.startswith(("http://", "https://")):
        response = httpx.get(manifest_url(source), timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        return response.text
    return Path(source).read_text(encoding="utf-8")


@app.command("validate")
def validate(
    source: Annotated[str, typer.Argument(help="A manifest file, its URL, or the plugin's base URL.")],
    strict: Annotated[bool, typer.Option("--strict", help="Apply the limits OpenAI documented.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
) -> None:
    """Print the problems of a manifest; exit 1 when it has errors."""
    try:
        document = load_manifest_document(read_source(source))
    except (OSError, ValueError, httpx.HTTPError) as exc:
        typer.echo(f"error: cannot read {source}: {exc}", err=True)
        raise typer.Exit(1) from exc
    problems = validate_manifest(document, "strict" if strict else "default")
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for problem in problems:
            typer.echo(str(problem))
        errors = sum(p.level == "error" for p in problems)
        typer.echo(f"{errors} errors, {len(problems) - errors} warnings")
    raise typer.Exit(1 if has_errors(problems) else 0)
