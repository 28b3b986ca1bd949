"""The MCP bridge driven by the SDK's own client: the same operations, the same data, the same credential."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from fastapi import APIRouter, FastAPI, HTTPException, Request
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import MetaData

from plugkit.auth.principal import Principal
from plugkit.manifest import ServiceHttpAuth
from plugkit.mcp import api_operations, mount_mcp
from plugkit.plugins.todo.app import create_app as create_todo_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.settings import AuthKind
from tests.helpers import PluginServer
from tests.host.support import build_app

TOKEN = "s3cret-token"


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
