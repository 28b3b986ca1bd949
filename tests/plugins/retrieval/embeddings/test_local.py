from __future__ import annotations

import asyncio

import numpy as np
import pytest

from plugkit.plugins.retrieval.embeddings.local import DIMENSION, LocalEmbedder, model_dir


def test_the_model_ships_inside_the_package() -> None:
    assert (model_dir() / "model.safetensors").is_file()


async def test_embeddings_are_unit_vectors_of_the_model_dimension(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed_documents(["The mitochondria is the powerhouse of the cell.", "Paris"])
    assert [len(v) for v in vectors] == [DIMENSION, DIMENSION]
    assert [float(np.linalg.norm(v)) for v in vectors] == pytest.approx([1.0, 1.0], abs=1e-4)


async def test_similar_texts_are_closer_than_unrelated_ones(embedder: LocalEmbedder) -> None:
    query, near, far = await embedder.embed_queries(
        ["How do cells make energy?", "Mitochondria produce ATP for the cell.", "The stock market fell today."]
    )
    assert float(np.dot(query, near)) > float(np.dot(query, far)) + 0.2


async def test_the_event_loop_keeps_running_while_the_model_embeds(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await embedder.embed_documents(["some text to embed"] * 64)
    task.cancel()
    assert ticks > 1


async def test_nothing_to_embed_returns_nothing(embedder: LocalEmbedder) -> None:
    assert await embedder.embed_documents([]) == []


def test_batched_results_equal_one_by_one_results(embedder: LocalEmbedder) -> None:
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    batched = LocalEmbedder(batch_size=3)
    batched._model = embedder.load()
    single = LocalEmbedder(batch_size=1)
    single._model = embedder.load()
    assert np.allclose(batched._encode(texts), single._encode(texts), atol=1e-5)
