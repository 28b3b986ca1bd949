"""Readiness of the retrieval plugin: 503 with the reason while its store opens and loads its index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from plugkit.plugins.retrieval.stores.base import StoreInfo
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from tests.helpers import asgi_client


class SlowToOpenStore(EmbeddedStore):
    """The embedded store, whose opening (reading a large index, in production) ends when the test says so."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.may_open = asyncio.Event()

    async def open(self, info: StoreInfo) -> None:
        await self.may_open.wait()
        await super().open(info)


async def test_readyz_is_503_naming_the_store_while_it_loads_and_queries_wait_for_it(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    store = SlowToOpenStore(tmp_path / "retrieval")
    settings = RetrievalSettings(data_dir=tmp_path, store_open_wait_s=0)
    app = create_app(settings, embedder=embedder, tokenizer=tokenizer, store=store)
    async with asgi_client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "opening the store" in ready.json()["reasons"]["store"]
        query = asyncio.create_task(client.post("/query", json={"queries": [{"query": "bees"}]}))
        await asyncio.sleep(0.2)
        assert not query.done()
        store.may_open.set()
        assert (await query).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_a_store_that_cannot_open_fails_start_up_when_it_fails_within_the_wait(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    (tmp_path / "retrieval").write_text("not a directory")
    app = create_app(RetrievalSettings(data_dir=tmp_path), embedder=embedder, tokenizer=tokenizer)
    with pytest.raises(FileExistsError):
        async with asgi_client(app):
            pass


async def test_a_store_that_fails_after_the_wait_makes_readyz_and_the_api_answer_503_with_the_cause(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    (tmp_path / "retrieval").write_text("not a directory")
    store = SlowToOpenStore(tmp_path / "retrieval")
    settings = RetrievalSettings(data_dir=tmp_path, store_open_wait_s=0)
    app = create_app(settings, embedder=embedder, tokenizer=tokenizer, store=store)
    async with asgi_client(app) as client:
        store.may_open.set()
        query = await client.post("/query", json={"queries": [{"query": "bees"}]})
        ready = await client.get("/readyz")
    assert query.status_code == 503 and "the document store is not available" in query.json()["detail"]
    assert ready.status_code == 503 and "the store failed to open" in ready.json()["reasons"]["store"]
