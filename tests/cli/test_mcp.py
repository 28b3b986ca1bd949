"""`plugkit mcp NAME`: a plugin over stdio, driven by the SDK's stdio client; the data is the plugin's own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters
from typer.testing import CliRunner

from plugkit.cli import app
from tests.helpers import REPO_ROOT, asgi_client
from tests.host.support import build_app

runner = CliRunner()


def stdio_params(*args: str) -> StdioServerParameters:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return StdioServerParameters(command=sys.executable, args=["-m", "plugkit", "mcp", *args], env=env)


async def test_plugkit_mcp_todo_over_stdio_lists_tools_and_writes_what_rest_reads(tmp_path: Path) -> None:
    async with Client(stdio_params("todo", "--data-dir", str(tmp_path))) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        added = await client.call_tool("addTodo", {"username": "frank", "todo": "water plants"})
        listed = await client.call_tool("getTodos", {"username": "frank"})
    assert names == ["addTodo", "deleteTodo", "deleteTodoById", "getTodos"]
    assert not added.is_error and listed.structured_content["todos"] == ["water plants"]
    async with asgi_client(build_app("todo", tmp_path)) as rest:
        assert (await rest.get("/todos/frank")).json()["todos"] == ["water plants"]


def test_an_unknown_plugin_is_bad_usage() -> None:
    result = runner.invoke(app, ["mcp", "nosuch"])
    assert result.exit_code == 2 and "no plugin 'nosuch'; installed: retrieval, sports, todo" in result.output
