"""The MCP bridge: any plugin app served as an MCP server whose tools are its API operations.

Tools are built from the app's own OpenAPI document (same names and descriptions as the REST operations) and every
call goes through the app in-process over ASGI, so authentication, validation, limits and storage are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import mcp.types as types
from fastapi import FastAPI
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from plugkit.edge import public_base_url
from plugkit.host.call import call_operation
from plugkit.host.tools import Operation, mcp_tools, operations
from plugkit.middleware import admit

MCP_PATH = "/mcp"
_IN_PROCESS_BASE = "http://plugin.internal"


def api_operations(app: FastAPI) -> list[Operation]:
    """The operations a model can call: every operation of the app's spec but the auth method's own (sign-in,
    token) routes and those taking a non-JSON body (file uploads), which tool arguments cannot carry."""
    auth_paths = {getattr(route, "path", None) for router in app.state.auth.routers() for route in router.routes}
    return [
        op
        for op in operations(app.openapi())
        if op.path not in auth_paths and op.body_media_type in (None, "application/json")
    ]


class PluginBridge:
    """An MCP server over a plugin app. `authorization` is the credential used when the transport carries none."""

    def __init__(self, app: FastAPI, *, authorization: str | None = None) -> None:
        self.app = app
        self.authorization = authorization
        self.operations = {op.operation_id: op for op in api_operations(app)}
        self.tools = [types.Tool.model_validate(t) for t in mcp_tools(list(self.operations.values()))]
        self.server: Server[Any] = Server(
            app.title or "plugin",
            version=app.version,
            instructions=app.description or None,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    def _authorization(self, ctx: ServerRequestContext[Any]) -> str | None:
        request = ctx.request
        if isinstance(request, Request) and request.headers.get("authorization"):
            return request.headers["authorization"]
        return self.authorization

    def _base(self, ctx: ServerRequestContext[Any]) -> str:
        """The in-process call goes to the URL the MCP request came to, so an access token bound to this plugin
        (RFC 8707) is accepted there as it was at the MCP endpoint."""
        request = ctx.request
        settings = self.app.state.settings
        if isinstance(request, Request):
            return public_base_url(request, settings)
        return settings.public_url.rstrip("/") if settings.public_url else _IN_PROCESS_BASE

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        op = self.operations.get(params.name)
        if op is None:
            return _error(f"no tool {params.name!r}; the tools are: {', '.join(self.operations)}")
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                result = await call_operation(
                    client, op, self._base(ctx), params.arguments or {}, authorization=self._authorization(ctx)
                )
            except ValueError as exc:
                return _error(str(exc))
        if not result.ok:
            return _error(f"HTTP {result.status}: {result.text}")
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)],
            structured_content=op.structured(result.data),
        )


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


class McpCredential:
    """Lets a request through to `inner` only if the plugin's auth method accepts its credential.

    Under oauth a refusal also names the protected-resource metadata (RFC 9728), as MCP clients expect: the auth
    method's own challenge does, for the path it was told of by `resource_metadata_route`.
    """

    def __init__(self, inner: ASGIApp, plugin: FastAPI, path: str) -> None:
        self.inner, self.plugin, self.path = inner, plugin, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not await admit(self.plugin.state.auth, scope, send):
            return
        await self.inner(scope, receive, send)


def mount_mcp(app: FastAPI, path: str = MCP_PATH) -> FastAPI:
    """Serve the app's operations over MCP streamable HTTP at `path`, beside its REST API, behind the same credential.

    Stateless with JSON responses, so it works under several workers and through the app's response-size limit.
    """
    bridge = PluginBridge(app)
    manager = StreamableHTTPSessionManager(app=bridge.server, stateless=True, json_response=True)
    app.router.routes.append(Route(path, endpoint=McpCredential(StreamableHTTPASGIApp(manager), app, path)))
    if app.state.auth.kind == "oauth":
        app.router.routes.append(app.state.auth.resource_metadata_route(path))
    previous: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with previous(asgi_app) as state, manager.run():
            yield state

    app.router.lifespan_context = lifespan
    return app


async def serve_stdio(app: FastAPI, *, authorization: str | None = None) -> None:
    """Run the app's MCP server over stdin/stdout (for desktop clients), with the app's startup and shutdown."""
    bridge = PluginBridge(app, authorization=authorization)
    async with app.router.lifespan_context(app), stdio_server() as (read_stream, write_stream):
        await bridge.server.run(read_stream, write_stream, bridge.server.create_initialization_options())
