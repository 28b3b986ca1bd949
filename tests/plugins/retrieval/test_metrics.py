"""The retrieval plugin's metrics: embedding batches, store searches by mode, the index's size and lag."""

from __future__ import annotations

from pathlib import Path

from plugkit.plugins.retrieval.app import create_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import asgi_client
from tests.test_metrics import samples


async def test_scrape_shows_embedding_batches_searches_by_mode_and_the_index_size(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    app = create_app(RetrievalSettings(data_dir=tmp_path), embedder=embedder, tokenizer=tokenizer)
    async with asgi_client(app) as client:
        before = samples((await client.get("/metrics")).text)
        documents = [{"id": f"d{n}", "text": f"Document number {n} is about bees."} for n in range(3)]
        assert (await client.post("/upsert", json={"documents": documents})).status_code == 200
        queries = [{"query": "bees", "mode": "keyword"}]
        assert (await client.post("/query", json={"queries": queries})).status_code == 200
        after = samples((await client.get("/metrics")).text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("plugkit_retrieval_embed_batch_size_sum", kind="document") == 3
    assert grew("plugkit_retrieval_embed_seconds_count", kind="document") == 1
    assert grew("plugkit_retrieval_embed_seconds_count", kind="query") == 0  # keyword search embeds nothing
    assert grew("plugkit_retrieval_search_seconds_count", mode="keyword") == 1
    assert after[("plugkit_retrieval_index_chunks", ())] == 3
    assert after[("plugkit_retrieval_index_lag", ())] == 0
