"""/docs for people: Swagger UI from the package (no CDN) under a strict CSP, showing the full spec."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from plugkit.plugins.retrieval.app import create_app as create_retrieval_app
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.spec import iter_operations
from tests.auth.cdp import chromium_page
from tests.helpers import PluginServer, asgi_client

HIDDEN_FROM_MODEL = {"upsertDocuments", "upsertFile", "deleteDocuments"}


def operation_ids(spec: dict[str, object]) -> set[str]:
    return {str(op["operationId"]) for _p, _m, op in iter_operations(spec)}


async def test_the_docs_page_loads_only_this_origins_files_under_a_csp(tmp_path: Path) -> None:
    async with asgi_client(create_retrieval_app(RetrievalSettings(data_dir=tmp_path))) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp.split(";")[1]
        assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
        for url in re.findall(r"(?:src|href)='([^']+)'", page.text):
            asset = await client.get(url)
            assert asset.status_code == 200 and asset.content, url


async def test_the_full_spec_has_every_operation_and_the_models_spec_is_unchanged(tmp_path: Path) -> None:
    async with asgi_client(create_retrieval_app(RetrievalSettings(data_dir=tmp_path))) as client:
        model = (await client.get("/openapi.json")).json()
        full = (await client.get("/openapi.full.json")).json()
    validate(full)
    assert HIDDEN_FROM_MODEL <= operation_ids(full)
    assert not HIDDEN_FROM_MODEL & operation_ids(model)
    assert operation_ids(model) < operation_ids(full)
    assert full["servers"] == model["servers"]


@pytest.mark.slow
async def test_swagger_ui_renders_every_operation_in_chromium_without_leaving_the_origin(tmp_path: Path) -> None:
    with PluginServer("retrieval", "--data-dir", str(tmp_path)) as server:
        async with chromium_page() as page:
            await page.send("Network.enable")
            await page.send("Page.enable")
            await page.send("Page.navigate", url=f"{server.base_url}/docs")
            requested: list[str] = []
            shown: list[str] = []
            async with asyncio.timeout(60):
                while len(shown) < 6:
                    while not page.events.empty():
                        event = page.events.get_nowait()
                        if event["method"] == "Network.requestWillBeSent":
                            requested.append(event["params"]["request"]["url"])
                    shown = (
                        await page.evaluate(
                            "Array.from(document.querySelectorAll('.opblock-summary-path')).map(e => e.textContent)"
                        )
                        or []
                    )
                    await asyncio.sleep(0.3)
    assert {"/upsert", "/upsert-file", "/delete", "/query"} <= {s.replace("\u200b", "") for s in shown}
    assert requested and all(url.startswith(server.base_url) for url in requested), requested
