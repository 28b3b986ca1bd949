"""`plugkit call SOURCE OPERATION_ID --arg name=value ... [--json BODY] [--token T]`: call one operation."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer

from plugkit.cli.check import SourceArg, SpecOpt
from plugkit.cli.common import fail
from plugkit.cli.tools import load_or_fail
from plugkit.host.call import call_operation, find_operation
from plugkit.host.loader import LoadedPlugin
from plugkit.host.tools import BODY, Operation, operations


def parse_arguments(op: Operation, pairs: list[str], body: str | None) -> dict[str, Any]:
    """Tool arguments from `name=value` pairs (JSON values, except where the schema wants a string) and a body."""
    properties = op.input_schema["properties"]
    arguments: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--arg takes name=value, got {pair!r}")
        if properties.get(name, {}).get("type") == "string":
            arguments[name] = raw
            continue
        try:
            arguments[name] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[name] = raw
    if body is not None:
        try:
            document = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--json is not valid JSON: {exc}") from exc
        if op.body_spread:
            if not isinstance(document, dict):
                raise ValueError(f"--json must be an object for {op.operation_id}")
            arguments.update(document)
        else:
            arguments[BODY] = document
    return arguments


def authorization_header(plugin: LoadedPlugin, token: str | None) -> str | None:
    """`Bearer T`, or `Basic T` when the manifest's auth says basic."""
    if not token:
        return None
    auth = (plugin.manifest or {}).get("auth") or {}
    scheme = "Basic" if isinstance(auth, dict) and auth.get("authorization_type") == "basic" else "Bearer"
    return f"{scheme} {token}"


async def _call(plugin: LoadedPlugin, op: Operation, arguments: dict[str, Any], authorization: str | None) -> Any:
    assert plugin.server_url is not None
    async with httpx.AsyncClient() as client:
        return await call_operation(client, op, plugin.server_url, arguments, authorization=authorization)


def call(
    source: SourceArg,
    operation_id: Annotated[str, typer.Argument(help="The operationId to call.")],
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", metavar="NAME=VALUE", help="A parameter as name=value (repeatable)."),
    ] = None,
    body: Annotated[str | None, typer.Option("--json", help="The request body as JSON.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="PLUGKIT_TOKEN", help="The credential the plugin's auth wants.")
    ] = None,
    spec: SpecOpt = None,
) -> None:
    """Call one operation with the plugin's auth and print the response body; exit 1 on an HTTP error."""
    plugin = load_or_fail(source, spec)
    assert plugin.spec is not None
    if plugin.server_url is None:
        fail("the spec has no absolute server URL to call", code=1)
    try:
        op = find_operation(operations(plugin.spec), operation_id)
        arguments = parse_arguments(op, arg or [], body)
        result = asyncio.run(_call(plugin, op, arguments, authorization_header(plugin, token)))
    except ValueError as exc:
        fail(str(exc))
        return
    except httpx.HTTPError as exc:
        fail(f"the call failed: {type(exc).__name__}: {exc}", code=1)
        return
    typer.echo(json.dumps(result.data, indent=2) if result.data is not None else result.text)
    if result.too_long:
        typer.echo(f"warning: the response is {len(result.text)} characters; the host rejects over 100000", err=True)
    if not result.ok:
        typer.echo(f"error: HTTP {result.status}", err=True)
        raise typer.Exit(1)
