"""`plugkit mcp NAME`: a plugin over stdio, driven by the SDK's stdio client; the data is the plugin's own."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
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


@pytest.fixture(autouse=True)
def restored_environment() -> Iterator[None]:
    """`plugkit mcp` run in-process exports its options as PLUGKIT_* variables: keep them from later tests."""
    with mock.patch.dict(os.environ):
        yield


def test_a_token_for_a_plugin_without_auth_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["mcp", "todo", "--data-dir", str(tmp_path)], env={"PLUGKIT_MCP_TOKEN": "tok_" + "x" * 20}
    )
    assert result.exit_code == 2
    assert "runs with auth none, which would ignore it" in result.output


async def test_the_printed_stdio_config_runs_as_written_with_its_token_checked(tmp_path: Path) -> None:
    """The README's config named `plugkit` (not on a desktop client's PATH) and ran without auth."""
    data_dir = tmp_path / "data"
    printed = runner.invoke(app, ["mcp", "todo", "--data-dir", str(data_dir), "--auth", "user_http", "--print-config"])
    assert printed.exit_code == 0, printed.output
    server = json.loads(printed.output)["mcpServers"]["todo"]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).exists()
    assert str(data_dir.resolve()) in server["args"]
    create = ["tokens", "create", "--user", "alice", "--data-dir", str(data_dir), "--json"]
    created = await asyncio.to_thread(runner.invoke, app, create)  # the command runs its own event loop
    token = json.loads(created.output)["token"]
    env = {**server["env"], "PLUGKIT_MCP_TOKEN": token}  # the placeholder filled in, nothing else added
    assert set(server["env"]) == {"PLUGKIT_MCP_TOKEN"}
    async with Client(StdioServerParameters(command=server["command"], args=server["args"], env=env)) as client:
        own = await client.call_tool("addTodo", {"username": "alice", "todo": "water plants"})
        other = await client.call_tool("getTodos", {"username": "bob"})
    assert not own.is_error
    assert other.is_error and "HTTP 403" in other.content[0].text  # type: ignore[union-attr]
