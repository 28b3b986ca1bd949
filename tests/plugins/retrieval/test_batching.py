from __future__ import annotations

import asyncio

import numpy as np
import pytest

from plugkit.plugins.retrieval.batching import QueryBatcher
from plugkit.plugins.retrieval.embeddings.base import EmbeddingError
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder

QUESTIONS = [f"What is known about protein number {n} in human cells?" for n in range(12)]


class CountingEmbedder:
    """The real local model, counting the forward passes it is asked for."""

    def __init__(self, model: LocalEmbedder) -> None:
        self.model, self.model_id, self.dimension = model, model.model_id, model.dimension
        self.calls: list[int] = []

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.model.embed_documents(texts)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return await self.model.embed_queries(texts)


class BrokenEmbedder:
    model_id, dimension = "broken", 384

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("the provider is down")

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("the provider is down")


async def test_concurrent_queries_share_one_forward_pass(embedder: LocalEmbedder) -> None:
    counting = CountingEmbedder(embedder)
    batcher = QueryBatcher(counting, max_wait_s=0.01, max_batch=64)
    results = await asyncio.gather(*(batcher.embed_queries([q]) for q in QUESTIONS))
    assert counting.calls == [len(QUESTIONS)]
    assert all(len(r) == 1 for r in results)


async def test_each_caller_gets_the_vectors_of_its_own_texts(embedder: LocalEmbedder) -> None:
    batcher = QueryBatcher(embedder, max_wait_s=0.01)
    requests = [QUESTIONS[0:1], QUESTIONS[1:4], QUESTIONS[4:6]]
    batched = await asyncio.gather(*(batcher.embed_queries(r) for r in requests))
    for texts, vectors in zip(requests, batched, strict=True):
        alone = await embedder.embed_queries(texts)
        # Same texts, same vectors up to the model's precision (bf16/int8 kernels vary a little with batch shape).
        assert np.sum(np.asarray(vectors) * np.asarray(alone), axis=1).min() > 0.99


async def test_batches_hold_at_most_max_batch_texts(embedder: LocalEmbedder) -> None:
    counting = CountingEmbedder(embedder)
    batcher = QueryBatcher(counting, max_wait_s=0.01, max_batch=5)
    await asyncio.gather(*(batcher.embed_queries([q]) for q in QUESTIONS))
    assert sum(counting.calls) == len(QUESTIONS)
    assert max(counting.calls) <= 5


async def test_a_request_larger_than_max_batch_is_embedded_whole(embedder: LocalEmbedder) -> None:
    batcher = QueryBatcher(embedder, max_wait_s=0, max_batch=2)
    vectors = await batcher.embed_queries(QUESTIONS[:4])
    assert len(vectors) == 4


async def test_an_embedder_error_reaches_every_caller_of_the_batch() -> None:
    batcher = QueryBatcher(BrokenEmbedder(), max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.embed_queries([q]) for q in QUESTIONS[:3]), return_exceptions=True)
    assert all(isinstance(r, EmbeddingError) for r in results)
    with pytest.raises(EmbeddingError):  # and the batcher keeps serving after an error
        await batcher.embed_queries(["again"])


async def test_a_cancelled_caller_does_not_break_the_others(embedder: LocalEmbedder) -> None:
    batcher = QueryBatcher(embedder, max_wait_s=0.02)
    doomed = asyncio.create_task(batcher.embed_queries(["cancelled question"]))
    kept = asyncio.create_task(batcher.embed_queries(["kept question"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert len(await kept) == 1


async def test_nothing_to_embed_returns_nothing_without_a_batch(embedder: LocalEmbedder) -> None:
    batcher = QueryBatcher(embedder)
    assert await batcher.embed_queries([]) == []
    assert batcher.batches == 0


def test_a_negative_wait_is_refused(embedder: LocalEmbedder) -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        QueryBatcher(embedder, max_wait_s=-1)
