"""/docs for people: Swagger UI from the package (no CDN) under a strict CSP, showing the full spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from plugkit.plugins.retrieval.app import create_app as create_retrieval_app
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.spec import iter_operations
from tests.browser import chromium
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
def test_swagger_ui_renders_every_operation_in_chromium_without_leaving_the_origin(tmp_path: Path) -> None:
    with PluginServer("retrieval", "--data-dir", str(tmp_path)) as server, chromium() as browser:
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{server.base_url}/docs")
        page.locator(".opblock-summary-path").nth(5).wait_for(timeout=60_000)  # no eval: the page's CSP forbids it
        shown = page.eval_on_selector_all(".opblock-summary-path", "elements => elements.map(e => e.textContent)")
    assert {"/upsert", "/upsert-file", "/delete", "/query"} <= {s.replace("\u200b", "") for s in shown}
    assert requested and all(url.startswith(server.base_url) for url in requested), requested
