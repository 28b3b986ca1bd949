"""The MCP bridge driven by the SDK's own client: the same operations, the same data, the same credential."""

from __future__ import annotations

import base64
import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jsonschema
import mcp.types as types
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import MetaData

from plugkit.auth.principal import Principal
from plugkit.host.tools import mcp_tools
from plugkit.manifest import ServiceHttpAuth
from plugkit.mcp import api_operations, mount_mcp
from plugkit.plugins.retrieval import app as retrieval_app
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.sports import app as sports_app
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.plugins.todo.app import create_app as create_todo_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.settings import AuthKind
from plugkit.spec import CONSEQUENTIAL, iter_operations, render_spec
from tests.helpers import PluginServer
from tests.host.support import PLUGIN_NAMES, build_app

TOKEN = "s3cret-token"
SERVICE_TOKEN = "a-service-token-of-32-characters"


class StaticBearerAuth:
    """A minimal AuthMethod: one bearer token, compared in constant time (stands in for service_http)."""

    kind: AuthKind = "service_http"

    def manifest_auth(self, base_url: str) -> ServiceHttpAuth:
        return ServiceHttpAuth(verification_tokens={"openai": "v"})

    def security_scheme(self) -> dict[str, Any] | None:
        return {"type": "http", "scheme": "bearer"}

    async def authenticate(self, request: Request) -> Principal:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {TOKEN}".encode()):
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return Principal(method="service_http")

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def metadata(self) -> Sequence[MetaData]:
        return ()


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def test_serve_todo_with_mcp_serves_the_operations_as_tools_on_the_same_data(tmp_path: Path) -> None:
    with PluginServer("todo", "--mcp", "--data-dir", str(tmp_path)) as server:

        async def session() -> tuple[dict[str, str], Any, Any]:
            async with Client(f"{server.base_url}/mcp") as client:
                tools = {t.name: t.description or "" for t in (await client.list_tools()).tools}
                added = await client.call_tool("addTodo", {"username": "alice", "todo": "buy milk"})
                listed = await client.call_tool("getTodos", {"username": "alice"})
                return tools, added, listed

        tools, added, listed = anyio.run(session)
        spec = httpx.get(f"{server.base_url}/openapi.json").json()
        rest = httpx.get(f"{server.base_url}/todos/alice").json()
    described = {op["operationId"]: op["description"] for item in spec["paths"].values() for op in item.values()}
    assert tools == described
    assert not added.is_error and added.structured_content["todo"] == "buy milk"
    assert listed.structured_content["todos"] == ["buy milk"]
    assert rest["todos"] == ["buy milk"]


def test_a_failing_call_is_a_tool_error_carrying_the_apis_status_and_detail(tmp_path: Path) -> None:
    async def session() -> tuple[Any, Any, Any, Any]:
        app = mount_mcp(build_app("todo", tmp_path))
        async with app.router.lifespan_context(app), mcp_client(app) as client:
            missing = await client.call_tool("deleteTodo", {"username": "nobody", "todo_idx": 0})
            invalid = await client.call_tool("addTodo", {"username": "bob", "todo": ""})
            unknown = await client.call_tool("addTodo", {"username": "bob", "todo": "x", "colour": "red"})
            no_such = await client.call_tool("renameTodo", {})
            return missing, invalid, unknown, no_such

    missing, invalid, unknown, no_such = anyio.run(session)
    assert no_such.is_error and text_of(no_such).startswith("no tool 'renameTodo'; the tools are: getTodos")
    assert missing.is_error and text_of(missing).startswith("HTTP 404") and "has no todos" in text_of(missing)
    assert invalid.is_error and text_of(invalid).startswith("HTTP 422")
    assert unknown.is_error and "colour" in text_of(unknown)


@asynccontextmanager
async def mcp_client(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """The SDK client over streamable HTTP, reaching the app in-process."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), headers=headers or {})
    async with http, Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http)) as client:
        yield client


def protected_todo_app(tmp_path: Path) -> FastAPI:
    app = build_app("todo", tmp_path)
    app.state.auth = StaticBearerAuth()  # the app's dependency reads the method from here on every request
    return mount_mcp(app)


async def test_the_mcp_endpoint_refuses_a_request_without_the_plugins_credential(tmp_path: Path) -> None:
    app = protected_todo_app(tmp_path)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            anonymous = await http.post("/mcp", json=body)
            wrong = await http.post("/mcp", json=body, headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and wrong.json() == {"detail": "a bearer token is required"}


async def test_with_the_credential_the_tools_work_and_the_call_carries_it_to_the_api(tmp_path: Path) -> None:
    app = protected_todo_app(tmp_path)
    async with app.router.lifespan_context(app):
        async with mcp_client(app, {"Authorization": f"Bearer {TOKEN}"}) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            added = await client.call_tool("addTodo", {"username": "carol", "todo": "call mum"})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            rest = await http.get("/todos/carol", headers={"Authorization": f"Bearer {TOKEN}"})
            rest_anonymous = await http.get("/todos/carol")
    assert sorted(names) == ["addTodo", "deleteTodo", "deleteTodoById", "getTodos"]
    assert not added.is_error, text_of(added)
    assert rest.json()["todos"] == ["call mum"] and rest_anonymous.status_code == 401


def test_api_operations_leave_out_the_auth_methods_own_routes(tmp_path: Path) -> None:
    class WithSignIn(StaticBearerAuth):
        def routers(self) -> Sequence[APIRouter]:
            router = APIRouter()

            @router.post("/oauth/token", operation_id="issueToken")
            async def token() -> dict[str, str]:
                return {}

            return (router,)

    app = build_app("todo", tmp_path)
    app.state.auth = WithSignIn()
    app.include_router(WithSignIn().routers()[0])
    assert "issueToken" in {op["operationId"] for item in app.openapi()["paths"].values() for op in item.values()}
    assert "issueToken" not in {op.operation_id for op in api_operations(app)}


async def test_under_oauth_a_refusal_names_the_protected_resource_metadata_which_is_served(tmp_path: Path) -> None:
    app = create_todo_app(TodoSettings(auth="oauth", data_dir=tmp_path))
    mount_mcp(app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:5002") as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
    url = "http://127.0.0.1:5002/.well-known/oauth-protected-resource/mcp"
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == f'Bearer realm="plugkit", scope="plugin", resource_metadata="{url}"'
    assert metadata.json()["resource"] == "http://127.0.0.1:5002/mcp"
    assert metadata.json()["authorization_servers"] == ["http://127.0.0.1:5002"]


async def test_without_oauth_there_is_no_protected_resource_metadata(tmp_path: Path) -> None:
    app = protected_todo_app(tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        assert (await http.get("/.well-known/oauth-protected-resource/mcp")).status_code == 404


def test_operations_taking_a_file_upload_are_not_offered_as_tools(tmp_path: Path) -> None:
    app = build_app("todo", tmp_path)
    router = APIRouter()

    @router.post(
        "/upload",
        operation_id="uploadFile",
        openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object"}}}}},
    )
    async def upload() -> dict[str, str]:
        return {}

    app.include_router(router)
    assert "uploadFile" in {op["operationId"] for item in app.openapi()["paths"].values() for op in item.values()}
    assert "uploadFile" not in {op.operation_id for op in api_operations(app)}


def plugin_app(name: str, data_dir: Path, **options: Any) -> FastAPI:
    """A reference plugin's app with MCP mounted; retrieval in memory mode, so that its write tools are offered too."""
    if name != "retrieval" and not options:
        return mount_mcp(build_app(name, data_dir))
    factory, settings_class = {
        "retrieval": (retrieval_app.create_app, RetrievalSettings),
        "sports": (sports_app.create_app, SportsSettings),
    }[name]
    settings = settings_class(data_dir=data_dir, **({"memory": True} if name == "retrieval" else {}), **options)
    return mount_mcp(factory(settings))  # type: ignore[operator]


async def call_every_tool(name: str, client: Client) -> dict[str, Any]:
    """One successful call of each tool of the plugin, in an order where each finds what it needs."""
    results: dict[str, Any] = {}

    async def call(tool: str, arguments: dict[str, Any]) -> Any:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, f"{tool}: {text_of(result)}"
        results[tool] = result
        return result.structured_content

    if name == "todo":
        added = await call("addTodo", {"username": "alice", "todo": "buy milk"})
        await call("getTodos", {"username": "alice"})
        await call("deleteTodoById", {"username": "alice", "todo_id": added["id"]})
        await client.call_tool("addTodo", {"username": "alice", "todo": "walk the dog"})
        await call("deleteTodo", {"username": "alice", "todo_idx": 0})
    elif name == "sports":
        await call("getTeams", {})
        players = await call("getPlayers", {"query": "james", "limit": 3})
        await call("getGames", {"seasons": [2023], "limit": 3})
        await call("getStats", {"seasons": [2023], "limit": 3})
        await call("getSeasonAverages", {"season": 2023, "player_ids": [players["data"][0]["id"]]})
    else:
        text = "Volcanoes erupt when magma rises through the crust."
        await call("upsertDocuments", {"documents": [{"id": "volcano", "text": text}]})
        content = base64.b64encode(b"Sourdough bread rises slowly because of wild yeast.").decode()
        await call("upsertFileContent", {"filename": "bread.txt", "content_base64": content, "id": "bread"})
        await call("queryDocuments", {"queries": [{"query": "lava", "top_k": 2}]})
        await call("search", {"query": "lava"})
        await call("fetch", {"id": "volcano"})
        await call("getDocument", {"document_id": "bread"})
        await call("listDocuments", {"limit": 5})
    return results


@pytest.mark.parametrize("name", PLUGIN_NAMES)
def test_every_tools_structured_content_validates_against_its_output_schema(name: str, tmp_path: Path) -> None:
    async def session() -> tuple[list[types.Tool], dict[str, Any]]:
        app = plugin_app(name, tmp_path)
        async with app.router.lifespan_context(app), mcp_client(app) as client:
            return (await client.list_tools()).tools, await call_every_tool(name, client)

    tools, results = anyio.run(session)
    assert {t.name for t in tools} == set(results)  # every tool was called
    for tool in tools:
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        jsonschema.validate(results[tool.name].structured_content, tool.output_schema)


@pytest.mark.parametrize("name", PLUGIN_NAMES)
def test_every_tool_has_a_title_and_states_whether_it_reads_or_destroys_as_its_route_declared(
    name: str, tmp_path: Path
) -> None:
    app = plugin_app(name, tmp_path)

    async def session() -> list[types.Tool]:
        async with app.router.lifespan_context(app), mcp_client(app) as client:
            return (await client.list_tools()).tools

    tools = anyio.run(session)
    declared = {op.operation_id: op.hints for op in api_operations(app)}
    assert all(hints.declared for hints in declared.values())  # none is left to the HTTP method
    for tool in tools:
        hints, annotations = declared[tool.name], tool.annotations
        assert tool.title and annotations is not None
        assert annotations.read_only_hint is hints.read_only and annotations.destructive_hint is hints.destructive
        assert annotations.read_only_hint or annotations.destructive_hint is not None
        assert annotations.idempotent_hint is hints.idempotent and annotations.open_world_hint is False
    annotations_of = {t.name: t.annotations for t in tools}
    expected = {
        "todo": {"getTodos": (True, False), "addTodo": (False, False), "deleteTodo": (False, True)},
        "sports": {"getPlayers": (True, False), "getSeasonAverages": (True, False)},
        "retrieval": {"queryDocuments": (True, False), "search": (True, False), "upsertDocuments": (False, True)},
    }[name]
    for tool_name, (read_only, destructive) in expected.items():
        hints = annotations_of[tool_name]
        assert hints is not None and (hints.read_only_hint, hints.destructive_hint) == (read_only, destructive)


@pytest.mark.parametrize("name", PLUGIN_NAMES)
def test_the_specs_consequential_flag_and_the_tools_read_only_hint_come_from_the_same_facts(
    name: str, tmp_path: Path
) -> None:
    app = plugin_app(name, tmp_path)
    spec = render_spec(app.openapi(), "http://127.0.0.1")
    flags = {op["operationId"]: op[CONSEQUENTIAL] for _path, _method, op in iter_operations(spec)}
    read_only = {t["name"]: t["annotations"]["readOnlyHint"] for t in mcp_tools(api_operations(app))}
    assert read_only and all(flags[tool] is not ro for tool, ro in read_only.items())
    if name == "retrieval":
        assert flags["queryDocuments"] is False and flags["search"] is False  # POST, yet read-only as declared
        assert flags["upsertDocuments"] is True


def test_sports_tools_reach_an_open_world_only_with_the_balldontlie_backend_and_stay_guarded(tmp_path: Path) -> None:
    local = plugin_app("sports", tmp_path / "local")
    remote = plugin_app(
        "sports", tmp_path / "remote", sports_backend="balldontlie", auth="service_http", service_token=SERVICE_TOKEN
    )

    async def session(app: FastAPI, headers: dict[str, str]) -> list[types.Tool]:
        async with app.router.lifespan_context(app), mcp_client(app, headers) as client:
            return (await client.list_tools()).tools

    assert not any(t.annotations and t.annotations.open_world_hint for t in anyio.run(session, local, {}))
    remote_tools = anyio.run(session, remote, {"Authorization": f"Bearer {SERVICE_TOKEN}"})
    assert remote_tools and all(t.annotations and t.annotations.open_world_hint for t in remote_tools)
    assert all(t.annotations and t.annotations.read_only_hint for t in remote_tools)

    async def unauthenticated() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=remote), base_url="http://127.0.0.1") as http:
            return (await http.get("/teams")).status_code

    assert anyio.run(unauthenticated) == 401
