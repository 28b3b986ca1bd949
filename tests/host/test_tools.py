"""Operations as tools: arguments from path, query, header and body with every $ref resolved, in three formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugkit.host.loader import load_plugin
from plugkit.host.tools import BODY, deref, mcp_tools, openai_tools, operations, ts_type, typescript_namespace
from tests.host.support import build_app, host_client

SPEC_30: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Shop", "version": "1"},
    "servers": [{"url": "https://shop.example.com"}],
    "paths": {
        "/items/{item_id}": {
            "parameters": [{"$ref": "#/components/parameters/ItemId"}],
            "get": {
                "operationId": "getItem",
                "summary": "Get one item",
                "parameters": [
                    {"name": "fields", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "put": {
                "operationId": "replaceItem",
                "requestBody": {"$ref": "#/components/requestBodies/Item"},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/tags": {
            "post": {
                "operationId": "addTags",
                "description": "Add tags.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}},
                },
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/ping": {"get": {"operationId": "ping", "summary": "Ping", "responses": {"200": {"description": "ok"}}}},
        "/hidden": {"get": {"summary": "no operationId", "responses": {"200": {"description": "ok"}}}},
    },
    "components": {
        "parameters": {
            "ItemId": {
                "name": "item_id",
                "in": "path",
                "required": True,
                "description": "The item.",
                "schema": {"type": "integer"},
            }
        },
        "requestBodies": {
            "Item": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
            }
        },
        "schemas": {
            "Item": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "description": "Its name."},
                    "kind": {"type": "string", "enum": ["book", "pen"], "default": "book"},
                    "parent": {"$ref": "#/components/schemas/Item"},
                    "price": {"type": "number", "nullable": True},
                },
            }
        },
    },
}


def by_id(spec: dict[str, Any]) -> dict[str, Any]:
    return {op.operation_id: op for op in operations(spec)}


def test_operations_without_an_operation_id_are_skipped_as_the_host_does() -> None:
    assert list(by_id(SPEC_30)) == ["getItem", "replaceItem", "addTags", "ping"]


def test_path_level_and_referenced_parameters_become_required_arguments_and_cookies_are_left_out() -> None:
    schema = by_id(SPEC_30)["getItem"].input_schema
    assert list(schema["properties"]) == ["item_id", "fields", "X-Trace"]
    assert schema["required"] == ["item_id"]
    assert schema["properties"]["item_id"] == {"type": "integer", "description": "The item."}


def test_an_object_body_is_spread_into_arguments_with_every_ref_resolved_and_recursion_cut() -> None:
    schema = by_id(SPEC_30)["replaceItem"].input_schema
    assert list(schema["properties"]) == ["item_id", "name", "kind", "parent", "price"]
    assert schema["required"] == ["item_id", "name"]
    assert "$ref" not in json.dumps(schema)
    assert schema["properties"]["parent"] == {"description": "(recursive: Item)"}


def test_a_body_that_is_not_an_object_is_one_body_argument() -> None:
    op = by_id(SPEC_30)["addTags"]
    assert op.input_schema == {
        "type": "object",
        "properties": {BODY: {"type": "array", "items": {"type": "string"}}},
        "required": [BODY],
    }
    assert op.split_arguments({BODY: ["a"]}) == ({}, {}, {}, ["a"])


def test_arguments_split_back_onto_path_query_headers_and_body() -> None:
    get_item, replace_item = by_id(SPEC_30)["getItem"], by_id(SPEC_30)["replaceItem"]
    assert get_item.split_arguments({"item_id": 3, "fields": ["a"], "X-Trace": 1}) == (
        {"item_id": 3},
        {"fields": ["a"]},
        {"X-Trace": "1"},
        None,
    )
    assert replace_item.split_arguments({"item_id": 3, "name": "n"}) == ({"item_id": 3}, {}, {}, {"name": "n"})


def test_a_missing_path_argument_or_an_unknown_argument_is_a_clear_error() -> None:
    get_item = by_id(SPEC_30)["getItem"]
    with pytest.raises(ValueError, match="needs the path parameter 'item_id'"):
        get_item.split_arguments({})
    with pytest.raises(ValueError, match="takes no argument 'colour'"):
        get_item.split_arguments({"item_id": 1, "colour": "red"})


def test_openai_tools_are_function_schemas_named_by_operation_id() -> None:
    [tool] = [t for t in openai_tools(operations(SPEC_30)) if t["function"]["name"] == "ping"]
    assert tool == {
        "type": "function",
        "function": {"name": "ping", "description": "Ping", "parameters": {"type": "object", "properties": {}}},
    }


def test_mcp_tools_carry_hints_from_the_http_method() -> None:
    tools = {t["name"]: t for t in mcp_tools(operations(SPEC_30))}
    assert tools["getItem"]["annotations"]["readOnlyHint"] is True
    assert tools["replaceItem"]["annotations"]["readOnlyHint"] is False
    assert tools["getItem"]["inputSchema"] == by_id(SPEC_30)["getItem"].input_schema


def test_mcp_tools_carry_the_hints_and_title_a_route_declared() -> None:
    declared = {
        "post": {
            "operationId": "searchItems",
            "summary": "Search the items of the shop, best first",
            "x-plugkit-tool": {"title": "Search items", "annotations": {"readOnlyHint": True, "openWorldHint": True}},
            "responses": {"200": {"description": "ok"}},
        }
    }
    [tool] = mcp_tools(operations({**SPEC_30, "paths": {"/search": declared}}))
    assert tool["title"] == "Search items" and tool["annotations"]["title"] == "Search items"
    assert tool["annotations"] | {"title": None} == {
        "title": None,
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": True,
    }


def test_the_output_schema_is_the_success_responses_schema_and_a_non_object_is_carried_as_result() -> None:
    item = {"$ref": "#/components/schemas/Item"}
    paths = {
        "/item": {
            "get": {"operationId": "getOne", "responses": {"200": {"content": {"application/json": {"schema": item}}}}}
        },
        "/items": {
            "get": {
                "operationId": "getMany",
                "responses": {
                    "default": {"description": "error"},
                    "200": {"content": {"application/json": {"schema": {"type": "array", "items": item}}}},
                },
            }
        },
        "/ping": {"get": {"operationId": "ping", "responses": {"204": {"description": "nothing"}}}},
    }
    ops = by_id({**SPEC_30, "paths": paths})
    tools = {t["name"]: t for t in mcp_tools(list(ops.values()))}
    one, many = tools["getOne"]["outputSchema"], tools["getMany"]["outputSchema"]
    assert one["type"] == "object" and one["properties"]["name"] == {"type": "string", "description": "Its name."}
    assert one["properties"]["price"] == {"type": ["number", "null"]}  # OpenAPI 3.0 nullable as JSON Schema
    assert many == {"type": "object", "properties": {"result": {"type": "array", "items": one}}, "required": ["result"]}
    assert "outputSchema" not in tools["ping"]
    rows = [{"name": "pen", "price": None}]
    assert ops["getMany"].structured(rows) == {"result": rows} and ops["getOne"].structured(rows[0]) == rows[0]


def test_the_typescript_namespace_has_the_original_hosts_shape() -> None:
    ops = [by_id(SPEC_30)["ping"], by_id(SPEC_30)["replaceItem"]]
    text = typescript_namespace("shop", "Buy things.", ops)
    assert text.startswith("// Buy things.\nnamespace shop {\n\n// Ping\ntype ping = () => any;\n\n")
    assert "type replaceItem = (_: {\n// The item.\nitem_id: number,\n// Its name.\nname: string,\n" in text
    assert 'kind?: "book" | "pen", // default: "book"\n' in text
    assert "price?: number | null,\n" in text
    assert text.endswith("}) => any;\n\n} // namespace shop\n")


def test_typescript_types_cover_unions_arrays_and_odd_names() -> None:
    assert ts_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "number | null"
    assert ts_type({"type": ["string", "null"]}) == "string | null"
    assert ts_type({"type": "array", "items": {"enum": [1, 2]}}) == "(1 | 2)[]"
    assert ts_type({}) == "any"
    op = operations(
        {"paths": {"/s": {"get": {"operationId": "s", "parameters": [{"name": "ids[]", "in": "query", "schema": {}}]}}}}
    )
    assert '"ids[]"?: any,' in typescript_namespace("x", "", op)


def test_deref_keeps_siblings_of_a_ref_over_the_target() -> None:
    spec = {"components": {"schemas": {"A": {"type": "string", "description": "a"}}}}
    assert deref(spec, {"$ref": "#/components/schemas/A", "description": "b"}) == {"type": "string", "description": "b"}


async def test_the_todo_plugins_tools_match_its_api(tmp_path: Path) -> None:
    async with host_client(build_app("todo", tmp_path)) as client:
        loaded = await load_plugin("http://127.0.0.1:5002", client=client)
    assert loaded.spec is not None
    tools = {t["function"]["name"]: t["function"] for t in openai_tools(operations(loaded.spec))}
    assert set(tools) == {"addTodo", "getTodos", "deleteTodo", "deleteTodoById"}
    add = tools["addTodo"]["parameters"]
    assert add["required"] == ["username", "todo"] and add["properties"]["todo"]["maxLength"] == 1000
    assert "$ref" not in json.dumps(tools)
