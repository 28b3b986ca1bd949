"""Calling operations as a host does, against the real TODO app in-process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from plugkit.host.call import build_request, call_operation, find_operation
from plugkit.host.loader import load_plugin
from plugkit.host.tools import operations
from tests.helpers import asgi_client
from tests.host.support import build_app


async def test_add_then_get_todos_round_trips_through_the_api(tmp_path: Path) -> None:
    async with asgi_client(build_app("todo", tmp_path), base_url="http://127.0.0.1:5002") as client:
        loaded = await load_plugin("http://127.0.0.1:5002", client=client)
        assert loaded.spec is not None and loaded.server_url is not None
        ops = operations(loaded.spec)
        added = await call_operation(
            client, find_operation(ops, "addTodo"), loaded.server_url, {"username": "a b", "todo": "milk"}
        )
        listed = await call_operation(client, find_operation(ops, "getTodos"), loaded.server_url, {"username": "a b"})
    assert added.ok and added.data["todo"] == "milk"
    assert listed.data["todos"] == ["milk"]


async def test_an_http_error_is_a_result_with_its_status_and_detail(tmp_path: Path) -> None:
    async with asgi_client(build_app("todo", tmp_path), base_url="http://127.0.0.1:5002") as client:
        loaded = await load_plugin("http://127.0.0.1:5002", client=client)
        assert loaded.spec is not None and loaded.server_url is not None
        op = find_operation(operations(loaded.spec), "deleteTodo")
        result = await call_operation(client, op, loaded.server_url, {"username": "nobody", "todo_idx": 0})
    assert result.status == 404 and not result.ok and "has no todos" in result.data["detail"]


def test_an_unknown_operation_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no operation 'nope'; the plugin has: ping"):
        find_operation(operations({"paths": {"/p": {"get": {"operationId": "ping"}}}}), "nope")


def test_path_values_are_escaped_arrays_repeat_and_the_credential_is_sent() -> None:
    spec = {
        "paths": {
            "/u/{name}": {
                "get": {
                    "operationId": "get",
                    "parameters": [
                        {"name": "name", "in": "path", "schema": {"type": "string"}},
                        {"name": "ids[]", "in": "query", "schema": {"type": "array"}},
                        {"name": "flag", "in": "query", "schema": {"type": "boolean"}},
                    ],
                }
            }
        }
    }
    op = find_operation(operations(spec), "get")
    request = build_request(
        httpx.AsyncClient(),
        op,
        "https://x.test/",
        {"name": "a/b c", "ids[]": [1, 2], "flag": True},
        authorization="Bearer t",
    )
    assert str(request.url) == "https://x.test/u/a%2Fb%20c?ids%5B%5D=1&ids%5B%5D=2&flag=true"
    assert request.headers["authorization"] == "Bearer t"
