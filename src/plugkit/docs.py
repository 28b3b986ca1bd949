"""The interactive API docs for people, and the full spec they show.

Swagger UI 5 is served from the files the `fastapi-offline` package ships (no CDN, so /docs works offline; the
`swagger-ui-bundle` package's Swagger UI 4 cannot read OpenAPI 3.1), under a Content-Security-Policy that allows
only this origin's scripts."""

from __future__ import annotations

import copy
import html
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.staticfiles import StaticFiles

SWAGGER_UI_FILES = files("fastapi_offline") / "static"  # swagger-ui-bundle.js, swagger-ui.css, favicon.png
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
FULL_SPEC_PATH = "/openapi.full.json"
# Swagger UI sets inline styles and data: images; everything else comes from this origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Starts Swagger UI on the spec the page names (a file, not an inline script, so the CSP needs no 'unsafe-inline').
INIT_JS = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
"""


def docs_page(title: str, spec_url: str = FULL_SPEC_PATH) -> HTMLResponse:
    """The /docs page: Swagger UI's own files from ASSETS_PATH, showing `spec_url`."""
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<link rel='stylesheet' href='{ASSETS_PATH}/swagger-ui.css'>"
        f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon.png'>"
        f"</head><body><div id='swagger-ui' data-spec-url='{html.escape(spec_url)}'></div>"
        f"<script src='{ASSETS_PATH}/swagger-ui-bundle.js'></script>"
        f"<script src='{DOCS_PATH}/init.js'></script></body></html>"
    )
    return HTMLResponse(document, headers={"Content-Security-Policy": DOCS_CSP, "X-Frame-Options": "DENY"})


def full_openapi(app: FastAPI, routes: Sequence[APIRoute]) -> dict[str, Any]:
    """The spec of every operation of `routes`, those hidden from the model's spec included (people need the whole
    API; the model's spec stays as the plugin chose it)."""
    shown = []
    for route in routes:
        visible = copy.copy(route)
        visible.include_in_schema = True
        shown.append(visible)
    return get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=shown,
    )


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI's files and its start script (the /docs page itself is a route of the app factory)."""

    @app.get(f"{DOCS_PATH}/init.js", include_in_schema=False)
    async def init_js() -> Response:
        return Response(INIT_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    app.mount(ASSETS_PATH, StaticFiles(directory=str(SWAGGER_UI_FILES)), name="swagger-ui")
