"""The console's routes: the page (Jinja template), its static bundle, what the model sees, and who is signed in.

The page calls the plugin's own API from the browser with the credential the person gives it, so it can do no more
than that credential can: the console adds no route that acts on data. Its pages carry a strict
Content-Security-Policy (scripts and styles only from the bundle below, calls only to the plugin itself)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from plugkit.auth.base import AuthMethod
from plugkit.settings import PluginSettings

PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the OAuth callback URL carries a code
    "Cache-Control": "no-store",
}

_templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def console_enabled(settings: PluginSettings) -> bool:
    """`on`, or `auto` (the default) while the server listens on a loopback address only."""
    if settings.console == "auto":
        return settings.host in LOCAL_HOSTS
    return settings.console == "on"


@dataclass
class Console:
    """What the console needs from the app factory: the documents a host reads and the API's routes."""

    title: str
    settings: PluginSettings
    auth: AuthMethod
    manifest_for: Callable[[Request], dict[str, Any]]
    spec_for: Callable[[Request], dict[str, Any]]
    api_routes: Sequence[APIRoute]

    def routes(self) -> list[dict[str, str]]:
        """Every API route, those kept out of the spec too (the page offers views for known contracts)."""
        return [
            {"method": method, "path": route.path, "operation_id": route.operation_id or ""}
            for route in self.api_routes
            for method in sorted(route.methods or ())
        ]

    def config(self, request: Request) -> dict[str, Any]:
        """The page's settings, embedded in it as a JSON data block."""
        manifest = self.manifest_for(request)
        auth = manifest.get("auth") or {}
        return {
            "title": self.title,
            "name": manifest.get("name_for_human", self.title),
            "auth": {
                "kind": self.auth.kind,
                "scheme": "basic" if auth.get("authorization_type") == "basic" else "bearer",
                "client_id": self.settings.console_client_id,
                "client_url": auth.get("client_url"),
                "token_url": auth.get("authorization_url"),
                "scope": auth.get("scope"),
            },
            "routes": self.routes(),
        }


def _page(console: Console, request: Request) -> HTMLResponse:
    config = json.dumps(console.config(request)).replace("<", "\\u003c")  # a data block must not close its tag
    body = _templates.get_template("console.html").render(title=console.title, config=config, prefix=PREFIX)
    return HTMLResponse(body, headers=PAGE_HEADERS)


def mount_console(app: FastAPI, console: Console) -> None:
    """Serve the console at /console on `app`."""

    @app.get(PREFIX, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return _page(console, request)

    @app.get(f"{PREFIX}/callback", include_in_schema=False)
    async def callback(request: Request) -> HTMLResponse:
        """Where the plugin's authorization server sends the person back (the page finishes the sign-in)."""
        return _page(console, request)

    @app.get(f"{PREFIX}/model.json", include_in_schema=False)
    async def model(request: Request) -> JSONResponse:
        from plugkit.console.model_view import model_view  # host-side code, loaded when first asked for

        return JSONResponse(model_view(console.manifest_for(request), console.spec_for(request)))

    @app.get(f"{PREFIX}/forms/{{name}}", include_in_schema=False)
    async def form(request: Request, name: str) -> Response:
        from plugkit.console.model_view import tool_forms

        forms = tool_forms(console.manifest_for(request), console.spec_for(request))
        if name not in forms:
            return JSONResponse({"detail": f"no tool form {name!r}: ask for one of {', '.join(forms)}"}, 404)
        return PlainTextResponse(forms[name]["text"])

    @app.get(f"{PREFIX}/whoami", include_in_schema=False)
    async def whoami(request: Request) -> Response:
        """Who the request's credential signs in as, checked by the plugin's own auth method (its 401 otherwise)."""
        try:
            principal = await console.auth.authenticate(request)
        except StarletteHTTPException as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(
            {"method": principal.method, "user_id": principal.user_id}, headers={"Cache-Control": "no-store"}
        )

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
