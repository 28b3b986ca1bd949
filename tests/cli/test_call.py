"""`plugkit call` against a real TODO server: arguments, JSON bodies, errors, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.cli.call import authorization_header
from plugkit.host.loader import LoadedPlugin
from tests.helpers import PluginServer

runner = CliRunner()


@pytest.fixture(scope="module")
def todo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginServer]:
    with PluginServer("todo", "--data-dir", str(tmp_path_factory.mktemp("todo"))) as server:
        yield server


def test_call_add_todo_with_args_then_get_todos_prints_the_json_answer(todo_server: PluginServer) -> None:
    url = todo_server.base_url
    added = runner.invoke(app, ["call", url, "addTodo", "--arg", "username=dave", "--arg", "todo=42"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["todo"] == "42"  # the schema wants a string, so 42 stays one
    listed = runner.invoke(app, ["call", url, "getTodos", "-a", "username=dave"])
    assert json.loads(listed.stdout)["todos"] == ["42"]
    assert httpx.get(f"{url}/todos/dave").json()["todos"] == ["42"]


def test_a_json_body_is_spread_onto_the_operations_body(todo_server: PluginServer) -> None:
    url = todo_server.base_url
    runner.invoke(app, ["call", url, "addTodo", "-a", "username=erin", "--json", '{"todo": "first"}'])
    deleted = runner.invoke(app, ["call", url, "deleteTodo", "-a", "username=erin", "--json", '{"todo_idx": 0}'])
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["deleted"]["todo"] == "first"


def test_an_http_error_prints_the_body_and_exits_1(todo_server: PluginServer) -> None:
    result = runner.invoke(
        app, ["call", todo_server.base_url, "deleteTodo", "-a", "username=nobody", "-a", "todo_idx=3"]
    )
    assert result.exit_code == 1
    assert "has no todos" in result.stdout and "error: HTTP 404" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no operation 'nope'; the plugin has: "),
        (["getTodos"], "getTodos needs the path parameter 'username'"),
        (["getTodos", "-a", "username"], "--arg takes name=value"),
        (["addTodo", "-a", "username=x", "--json", "{bad"], "--json is not valid JSON"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(todo_server: PluginServer, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["call", todo_server.base_url, *args])
    assert result.exit_code == 2 and message in result.stderr


def test_the_token_goes_in_the_scheme_the_manifest_names() -> None:
    basic = LoadedPlugin(source="x", manifest={"auth": {"type": "user_http", "authorization_type": "basic"}})
    bearer = LoadedPlugin(source="x", manifest={"auth": {"type": "service_http", "authorization_type": "bearer"}})
    assert authorization_header(basic, "dXNlcjpwdw==") == "Basic dXNlcjpwdw=="
    assert authorization_header(bearer, "t") == "Bearer t"
    assert authorization_header(bearer, None) is None
