"""The Retriever's queries: batched with concurrent requests (one forward pass, one store call) or on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.models import Document, DocumentChunkWithScore, Query
from plugkit.plugins.retrieval.service import Retriever
from plugkit.plugins.retrieval.stores.base import SearchRequest
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore

TOPICS = {
    "bees": "Honey bees communicate the direction of flowers with a waggle dance inside the hive.",
    "volcano": "Magma rises through the crust and erupts from a volcano as lava and ash.",
    "chess": "In chess the king moves one square in any direction and must never be left in check.",
}
QUESTIONS = {
    "bees": "how do bees tell each other where flowers are",
    "volcano": "what comes out of an erupting volcano",
    "chess": "how does the king move in chess",
}


class CountingEmbedder:
    """The real local model, counting the forward passes asked of it for queries."""

    def __init__(self, model: LocalEmbedder) -> None:
        self.model, self.model_id, self.dimension = model, model.model_id, model.dimension
        self.query_calls: list[int] = []

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.model.embed_documents(texts)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        self.query_calls.append(len(texts))
        return await self.model.embed_queries(texts)


class CountingStore(EmbeddedStore):
    """The embedded store, counting its batch searches and failing any search for the text "explode"."""

    search_calls: list[int]

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        self.search_calls.append(len(requests))
        if any(r.text == "explode" for r in requests):
            raise RuntimeError("the search failed")
        return await super().search_many(requests)


async def open_retriever(
    path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer, **options: float
) -> tuple[Retriever, CountingEmbedder, CountingStore]:
    counting = CountingEmbedder(embedder)
    store = CountingStore(path)
    store.search_calls = []
    retriever = Retriever(store, counting, tokenizer, **options)  # type: ignore[arg-type]
    await retriever.open()
    await retriever.upsert([Document(id=name, text=text) for name, text in TOPICS.items()])
    return retriever, counting, store


@pytest.fixture
async def batched(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> AsyncIterator[tuple[Retriever, CountingEmbedder, CountingStore]]:
    parts = await open_retriever(tmp_path, embedder, tokenizer, query_batch_wait_s=0.02)
    yield parts
    await parts[0].close()


async def test_concurrent_requests_share_one_forward_pass_and_one_store_call(
    batched: tuple[Retriever, CountingEmbedder, CountingStore],
) -> None:
    retriever, embedder, store = batched
    names = list(QUESTIONS)
    answers = await asyncio.gather(*(retriever.query([Query(query=QUESTIONS[n], top_k=1)]) for n in names))
    assert embedder.query_calls == [3]
    assert store.search_calls == [3]
    for name, answer in zip(names, answers, strict=True):
        assert answer[0].query == QUESTIONS[name]
        assert answer[0].results[0].metadata.document_id == name  # each request gets its own answer


async def test_keyword_queries_need_no_forward_pass(batched: tuple[Retriever, CountingEmbedder, CountingStore]) -> None:
    retriever, embedder, _store = batched
    answer = await retriever.query([Query(query="waggle dance", mode="keyword", top_k=1)])
    assert answer[0].results[0].metadata.document_id == "bees"
    assert embedder.query_calls == []


async def test_a_failing_search_fails_only_its_own_request(
    batched: tuple[Retriever, CountingEmbedder, CountingStore],
) -> None:
    retriever, _embedder, store = batched
    good, bad = await asyncio.gather(
        retriever.query([Query(query=QUESTIONS["chess"], top_k=1)]),
        retriever.query([Query(query="explode", top_k=1)]),
        return_exceptions=True,
    )
    assert isinstance(bad, RuntimeError)
    assert not isinstance(good, BaseException) and good[0].results[0].metadata.document_id == "chess"
    assert store.search_calls[0] == 2  # tried together first


async def test_without_batching_a_request_still_searches_all_its_queries_in_one_store_call(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    retriever, counting, store = await open_retriever(tmp_path, embedder, tokenizer)
    assert retriever.query_batcher is None
    answer = await retriever.query([Query(query=q, top_k=1) for q in QUESTIONS.values()])
    assert [a.results[0].metadata.document_id for a in answer] == list(QUESTIONS)
    assert counting.query_calls == [3] and store.search_calls == [3]
    with pytest.raises(RuntimeError, match="the search failed"):
        await retriever.query([Query(query="explode")])
    await retriever.close()
