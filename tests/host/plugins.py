"""Helpers for the host tests: every reference plugin's app, and an httpx client reaching it as a host would."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from plugkit.cli.serve import PLUGINS

PLUGIN_NAMES = sorted(PLUGINS)


def build_app(name: str, data_dir: Path) -> FastAPI:
    """The app of the named plugin (from `plugkit serve`'s table) keeping its data in `data_dir`."""
    factory_path, settings_path = PLUGINS[name]
    module, _, attr = factory_path.partition(":")
    settings_module, _, settings_attr = settings_path.partition(":")
    settings = getattr(importlib.import_module(settings_module), settings_attr)(data_dir=data_dir)
    app: FastAPI = getattr(importlib.import_module(module), attr)(settings)
    return app


@asynccontextmanager
async def host_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that reaches the app in-process for any URL (the host fetches absolute URLs)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client
