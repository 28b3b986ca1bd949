"""`plugkit new NAME [--auth METHOD]`: a ready plugin project in ./NAME (package, entry point, tests, README)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Annotated, get_args

import typer

from plugkit.cli.common import fail
from plugkit.settings import AuthKind

NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")
DEFAULT_PORT = 5005

# template -> where it goes in the project ($module is the package's import name)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "init.py.tmpl": "$module/__init__.py",
    "plugin.py.tmpl": "$module/plugin.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
}


def render_project(name: str, auth: AuthKind = "none", port: int = DEFAULT_PORT) -> dict[str, str]:
    """The files of a new plugin project named `name`: relative path -> text."""
    values = {
        "name": name,
        "module": name.replace("-", "_"),
        "title": re.sub(r"[-_]+", " ", name).title(),
        "auth": auth,
        "port": str(port),
    }
    templates = files("plugkit.cli") / "templates" / "new"
    return {
        Template(target).substitute(values): Template((templates / source).read_text(encoding="utf-8")).substitute(
            values
        )
        for source, target in LAYOUT.items()
    }


def new(
    name: Annotated[str, typer.Argument(help="The plugin's name: the directory, package and `plugkit serve` name.")],
    auth: Annotated[
        str,
        typer.Option(
            "--auth", help="The auth method it runs with by default: none | service_http | user_http | oauth."
        ),
    ] = "none",
    port: Annotated[int, typer.Option("--port", help="Its default port.")] = DEFAULT_PORT,
) -> None:
    """Write a ready plugin project in ./NAME: install it with `pip install -e ./NAME`, then `plugkit serve NAME`."""
    if not NAME.fullmatch(name):
        fail(f"{name!r} is not a plugin name: a lower-case letter, then letters, digits, - or _ (20 at most)")
    if auth not in get_args(AuthKind):
        fail(f"--auth {auth!r} is not an auth method; choose one of: {', '.join(get_args(AuthKind))}")
    root = Path(name)
    if root.exists():
        fail(f"{root} already exists; choose another name or remove it")
    for relative, text in render_project(name, auth, port).items():  # type: ignore[arg-type]
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {root}/ ({name} on port {port}, auth {auth}). Next:")
    typer.echo(f'  pip install -e "./{name}[test]" && (cd {name} && pytest)')
    typer.echo(f"  plugkit serve {name}")
