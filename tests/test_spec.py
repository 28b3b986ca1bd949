from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from plugkit.hints import tool_hints
from plugkit.spec import CONSEQUENTIAL, lint_spec, render_spec, resolve_ref


def spec_with(operation: dict[str, Any], **top: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://plugin.example.org"}],
        "paths": {"/items": {"get": operation}},
    }
    spec.update(top)
    return spec


def test_a_clean_spec_has_no_lint_problems() -> None:
    assert lint_spec(spec_with({"operationId": "listItems", "summary": "List items"})) == []


def test_a_missing_operation_id_is_an_error_naming_the_operation() -> None:
    problems = lint_spec(spec_with({"summary": "List items"}))
    assert [(p.level, p.field) for p in problems] == [("error", "paths./items.get")]
    assert "operationId" in problems[0].message


def test_a_duplicate_operation_id_is_an_error() -> None:
    spec = spec_with({"operationId": "same"})
    spec["paths"]["/other"] = {"post": {"operationId": "same"}}
    assert any("repeats operationId 'same'" in p.message for p in lint_spec(spec))


def test_descriptions_over_the_host_limits_are_errors_with_their_lengths() -> None:
    operation = {
        "operationId": "x",
        "summary": "s" * 301,
        "parameters": [{"name": "q", "in": "query", "description": "d" * 701}],
    }
    messages = [str(p) for p in lint_spec(spec_with(operation))]
    assert "error: paths./items.get.summary: is 301 characters, over the limit of 300" in messages
    assert "error: paths./items.get.parameters.q.description: is 701 characters, over the limit of 700" in messages


def test_relative_or_missing_servers_are_errors() -> None:
    assert any(p.field == "servers[0].url" for p in lint_spec(spec_with({"operationId": "x"}, servers=[{"url": "/"}])))
    spec = spec_with({"operationId": "x"})
    del spec["servers"]
    assert any(p.field == "servers" for p in lint_spec(spec))


def test_swagger_2_documents_are_rejected() -> None:
    spec = spec_with({"operationId": "x"})
    del spec["openapi"]
    spec["swagger"] = "2.0"
    assert any(p.field == "openapi" and p.level == "error" for p in lint_spec(spec))


def test_a_request_body_that_is_not_an_object_is_an_error() -> None:
    operation = {
        "operationId": "x",
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L"}}}},
    }
    spec = spec_with(operation, components={"schemas": {"L": {"type": "array", "items": {"type": "string"}}}})
    assert any(p.field.endswith("requestBody") for p in lint_spec(spec))


def test_more_than_30_operations_is_a_warning_for_gpt_actions() -> None:
    spec = spec_with({"operationId": "op0"})
    for i in range(1, 31):
        spec["paths"][f"/p{i}"] = {"get": {"operationId": f"op{i}"}}
    assert [(p.level, p.field) for p in lint_spec(spec)] == [("warning", "paths")]


def test_render_sets_servers_security_and_consequential_flags() -> None:
    base = {
        "openapi": "3.1.0",
        "paths": {"/a": {"get": {"operationId": "getA"}, "post": {"operationId": "postA"}}},
    }
    spec = render_spec(
        base,
        "https://p.example.org/",
        security_scheme={"type": "http", "scheme": "bearer"},
        protected_operations=frozenset({"getA", "postA"}),
    )
    assert spec["servers"] == [{"url": "https://p.example.org"}]
    assert spec["paths"]["/a"]["get"]["x-openai-isConsequential"] is False
    assert spec["paths"]["/a"]["post"]["x-openai-isConsequential"] is True
    assert spec["paths"]["/a"]["get"]["security"] == [{"plugkit": []}]
    assert spec["components"]["securitySchemes"]["plugkit"] == {"type": "http", "scheme": "bearer"}
    assert "servers" not in base


def test_consequential_comes_from_the_operations_declared_facts_and_an_explicit_flag_is_kept() -> None:
    app = FastAPI()

    @app.post("/search", operation_id="search", openapi_extra=tool_hints(title="Search", read_only=True))
    async def search() -> dict[str, str]:
        return {}

    @app.get("/export", operation_id="export", openapi_extra=tool_hints(title="Export", read_only=False))
    async def export() -> dict[str, str]:
        return {}

    @app.put("/keep", operation_id="keep", openapi_extra={CONSEQUENTIAL: False})
    async def keep() -> dict[str, str]:
        return {}

    spec = render_spec(app.openapi(), "https://p.example.org")
    assert spec["paths"]["/search"]["post"][CONSEQUENTIAL] is False
    assert spec["paths"]["/export"]["get"][CONSEQUENTIAL] is True
    assert spec["paths"]["/keep"]["put"][CONSEQUENTIAL] is False


def test_resolve_ref_follows_chains_and_stops_on_cycles() -> None:
    spec = {"components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}, "B": {"type": "object"}}}}
    assert resolve_ref(spec, {"$ref": "#/components/schemas/A"}) == {"type": "object"}
    cyclic = {"components": {"schemas": {"A": {"$ref": "#/components/schemas/A"}}}}
    assert resolve_ref(cyclic, {"$ref": "#/components/schemas/A"}) == {}


def test_optional_inputs_lose_null_while_responses_keep_it() -> None:
    nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "N"}
    base = {
        "openapi": "3.1.0",
        "paths": {
            "/a": {
                "post": {
                    "operationId": "postA",
                    "parameters": [
                        {"name": "n", "in": "query", "required": False, "schema": dict(nullable_int)},
                        {"name": "m", "in": "query", "required": True, "schema": dict(nullable_int)},
                    ],
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                    "responses": {
                        "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Out"}}}}
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "In": {
                    "type": "object",
                    "properties": {"n": dict(nullable_int), "r": dict(nullable_int)},
                    "required": ["r"],
                },
                "Out": {"type": "object", "properties": {"n": dict(nullable_int)}},
            }
        },
    }
    spec = render_spec(base, "https://plugin.example.org")
    parameters = spec["paths"]["/a"]["post"]["parameters"]
    assert parameters[0]["schema"] == {"type": "integer", "title": "N"}
    assert parameters[1]["schema"] == nullable_int  # required and nullable: null is a value the caller may send
    schemas = spec["components"]["schemas"]
    assert schemas["In"]["properties"] == {"n": {"type": "integer", "title": "N"}, "r": nullable_int}
    assert schemas["Out"]["properties"]["n"] == nullable_int  # the server sends null
    assert base["paths"]["/a"]["post"]["parameters"][0]["schema"] == nullable_int  # the input is not changed
