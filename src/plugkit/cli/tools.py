"""`plugkit tools SOURCE --format openai|mcp|typescript`: the tool definitions a model gets from a plugin."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated

import typer

from plugkit.cli.check import SourceArg, SpecOpt
from plugkit.cli.common import fail
from plugkit.host.loader import LoadedPlugin, load_plugin
from plugkit.host.tools import mcp_tools, openai_tools, operations, typescript_namespace


class ToolFormat(StrEnum):
    openai = "openai"
    mcp = "mcp"
    typescript = "typescript"


def load_or_fail(source: str, spec: str | None) -> LoadedPlugin:
    """The loaded plugin, or exit 1 naming why it has no usable spec."""
    plugin = asyncio.run(load_plugin(source, spec_source=spec))
    if plugin.spec is None:
        fail("; ".join(p.message for p in plugin.problems) or f"no spec found for {source}", code=1)
    return plugin


def tools(
    source: SourceArg,
    fmt: Annotated[ToolFormat, typer.Option("--format", "-f", help="Which host's tool format.")] = ToolFormat.openai,
    spec: SpecOpt = None,
) -> None:
    """Print the plugin's operations as tools: OpenAI functions, MCP tools, or the TypeScript namespace prompt."""
    plugin = load_or_fail(source, spec)
    assert plugin.spec is not None
    ops = operations(plugin.spec)
    if fmt is ToolFormat.typescript:
        typer.echo(typescript_namespace(plugin.name, plugin.description, ops), nl=False)
    elif fmt is ToolFormat.mcp:
        typer.echo(json.dumps({"tools": mcp_tools(ops)}, indent=2))
    else:
        typer.echo(json.dumps(openai_tools(ops), indent=2))
