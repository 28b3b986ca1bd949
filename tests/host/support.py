"""Support for the host tests: every reference plugin's app, a client reaching it as a host would, sample documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from plugkit.cli import registry

PLUGIN_NAMES = sorted(registry.BUILTINS)


def build_app(name: str, data_dir: Path) -> FastAPI:
    """The app of the named plugin (as the registry finds it) keeping its data in `data_dir`."""
    plugin = registry.load(name)
    return plugin.create_app(plugin.load_settings(data_dir=data_dir))


@asynccontextmanager
async def host_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that reaches the app in-process for any URL (the host fetches absolute URLs)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


MANIFEST: dict[str, Any] = {
    "schema_version": "v1",
    "name_for_human": "Example",
    "name_for_model": "example",
    "description_for_human": "An example plugin.",
    "description_for_model": "An example plugin.",
    "auth": {"type": "none"},
    "api": {"type": "openapi", "url": "https://example.com/openapi.yaml"},
    "logo_url": "https://example.com/logo.png",
    "contact_email": "hello@example.com",
    "legal_info_url": "https://example.com/legal",
}


def spec_with(operations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "openapi": "3.0.1",
        "info": {"title": "Example", "version": "1"},
        "servers": [{"url": "https://example.com"}],
        "paths": operations,
        **extra,
    }


GOOD_OP = {"get": {"operationId": "getThing", "summary": "Get the thing", "responses": {"200": {"description": "ok"}}}}
