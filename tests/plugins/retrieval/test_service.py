"""The Retriever's queries: batched with concurrent requests (one forward pass, one store call) or on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.chunk_pool import TokenSpec
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.models import Document, DocumentChunkWithScore, Query
from plugkit.plugins.retrieval.service import DocumentTooLongError, Retriever
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


class CountingDocuments:
    """The real local model, counting the document embeddings asked of it, by text and by token ids."""

    def __init__(self, model: LocalEmbedder) -> None:
        self.model, self.model_id, self.dimension = model, model.model_id, model.dimension
        self.calls = 0

    def token_spec(self) -> TokenSpec:
        return self.model.token_spec()

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return await self.model.embed_documents(texts)

    async def embed_token_ids(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.calls += 1
        return await self.model.embed_token_ids(flat, lengths)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self.model.embed_queries(texts)


@pytest.mark.parametrize("chunk_workers", [0, 1])
async def test_a_document_over_the_chunk_limit_fails_its_write_before_the_model_runs(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer, chunk_workers: int
) -> None:
    counting = CountingDocuments(embedder)
    store = EmbeddedStore(tmp_path)
    retriever = Retriever(
        store,
        counting,  # type: ignore[arg-type]
        tokenizer,
        chunk_tokens=20,
        chunk_overlap=0,
        max_chunks_per_document=2,
        chunk_workers=chunk_workers,
    )
    await retriever.open()
    try:
        long = " ".join(f"Sentence number {n} says something plain." for n in range(20))
        with pytest.raises(DocumentTooLongError, match=r"document 'long' makes \d+ chunks, over the limit of 2"):
            await retriever.upsert([Document(id="short", text="One sentence."), Document(id="long", text=long)])
        assert counting.calls == 0
        assert store.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
        assert await retriever.upsert([Document(id="short", text="One sentence.")]) == ["short"]
        assert counting.calls == 1
        assert store.conn.execute("SELECT chunk_id, text FROM chunks").fetchall() == [("short_0", "One sentence.")]
    finally:
        await retriever.close()
