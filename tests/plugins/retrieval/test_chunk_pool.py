"""Chunking in worker processes for the GPU ingest path: the same chunks as `chunk_text`, token ids equal to what
tokenising each chunk's own text gives, and the same stored vectors as the text path."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.chunk_pool import ChunkPool, ChunkPoolError, TokenSpec
from plugkit.plugins.retrieval.chunking import HFTokenizer, chunk_text, chunk_token_ids
from plugkit.plugins.retrieval.embeddings import pipeline
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder, model_dir
from plugkit.plugins.retrieval.models import Document
from plugkit.plugins.retrieval.service import Retriever
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from tests.helpers import SHARED_DATA

EDGE_TEXTS = [
    "Café résumé naïve ÉCOLE straße 東京都は日本の首都です。 Überprüfung der Ergebnisse. " * 12,
    "unbelievably" * 120,  # one word far longer than a chunk: every cut falls inside it
    "a-b_c/d\\e f.g,h;i " * 60,
    "x\u0000y\u200bz \t\n\n emoji 😀🎉 and\u00a0non-breaking spaces. " * 30,
    "Short.",
    "",
    "   \n\n  ",
]


def scifact_texts(count: int) -> list[str]:
    with (SHARED_DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in islice(fh, count)]
    return [f"{row['title']}\n{row['text']}" for row in rows]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return scifact_texts(300) + EDGE_TEXTS


@pytest.fixture(scope="module")
def model_tokenizer() -> object:
    return pipeline.fast_tokenizer(model_dir(), 256)


@pytest.fixture
def pool(tokenizer: HFTokenizer) -> Iterator[ChunkPool]:
    chunks = ChunkPool(tokenizer, TokenSpec(model_dir() / "tokenizer.json", 256), 60, 10, workers=1)
    yield chunks
    chunks.close()


@pytest.mark.parametrize(("size", "overlap"), [(200, 20), (60, 10), (13, 4)])
def test_token_ids_taken_from_the_whole_text_equal_tokenising_the_chunk_alone(
    texts: list[str], tokenizer: HFTokenizer, model_tokenizer: object, size: int, overlap: int
) -> None:
    given = 0
    for text in texts:
        pairs = chunk_token_ids(text, tokenizer, size, overlap)
        assert [chunk for chunk, _ in pairs] == chunk_text(text, tokenizer, size, overlap)
        for chunk, ids in pairs:
            if ids is not None:
                given += 1
                assert ids == model_tokenizer.encode(chunk.text).ids[1:-1]  # type: ignore[attr-defined]
    assert given > 0


def test_a_chunk_cut_inside_a_word_gets_no_ids_from_the_whole_text(tokenizer: HFTokenizer) -> None:
    word = "pneumonoultramicroscopicsilicovolcanoconiosis"  # a dozen word pieces
    pairs = chunk_token_ids(f"{word} {word}", tokenizer, 5, 1)
    assert len(pairs) > 3
    assert all(ids is None for _, ids in pairs)  # each begins or ends inside a word
    assert chunk_token_ids(f"{word} {word}", tokenizer, 17, 0)[0][1] == tokenizer.encode(word).ids  # a whole word


async def test_the_pool_gives_chunk_texts_chunks_and_the_ids_the_model_reads_for_each(
    pool: ChunkPool, texts: list[str], tokenizer: HFTokenizer, model_tokenizer: object
) -> None:
    prepared = await pool.prepare(texts)
    assert prepared.texts == [[c.text for c in chunk_text(t, tokenizer, 60, 10)] for t in texts]
    chunks = [c for document in prepared.texts for c in document]
    assert len(prepared.lengths) == len(chunks) and prepared.flat.dtype == np.int32
    starts = np.cumsum(prepared.lengths) - prepared.lengths
    for chunk, start, length in zip(chunks, starts, prepared.lengths, strict=True):
        expected = model_tokenizer.encode(chunk).ids  # type: ignore[attr-defined]
        assert prepared.flat[start : start + length].tolist() == expected


async def test_chunks_longer_than_the_model_reads_are_truncated_as_the_model_truncates(
    tokenizer: HFTokenizer, model_tokenizer: object
) -> None:
    long_pool = ChunkPool(tokenizer, TokenSpec(model_dir() / "tokenizer.json", 256), 400, 0, workers=1)
    try:
        text = " ".join(["A sentence of several plain words that goes on"] * 120)
        prepared = await long_pool.prepare([text])
    finally:
        long_pool.close()
    (first, *_) = chunk_text(text, tokenizer, 400, 0)
    assert first.tokens == 400 and prepared.texts[0][0] == first.text and prepared.lengths[0] == 256
    assert prepared.flat[:256].tolist() == model_tokenizer.encode(first.text).ids  # type: ignore[attr-defined]


async def test_a_model_with_another_tokenizer_file_gets_each_chunk_tokenised_by_its_own(
    tmp_path: Path, tokenizer: HFTokenizer, texts: list[str]
) -> None:
    other = tmp_path / "other-model"
    other.mkdir()
    shutil.copy(model_dir() / "tokenizer.json", other / "tokenizer.json")
    with (other / "tokenizer.json").open("a", encoding="utf-8") as fh:
        fh.write("\n")  # another file (the chunker's ids are not reused), the same tokenizer
    other_pool = ChunkPool(tokenizer, TokenSpec(other / "tokenizer.json", 128), 60, 10, workers=1)
    try:
        prepared = await other_pool.prepare(texts[:40])
    finally:
        other_pool.close()
    reference = pipeline.fast_tokenizer(other, 128)
    flat, lengths = pipeline.flat_token_ids(reference, [c for document in prepared.texts for c in document])
    assert np.array_equal(prepared.flat, flat) and np.array_equal(prepared.lengths, lengths)


async def test_no_documents_prepare_to_nothing(pool: ChunkPool) -> None:
    prepared = await pool.prepare([])
    assert prepared.texts == [] and len(prepared.flat) == 0 and len(prepared.lengths) == 0


async def test_a_task_that_fails_in_a_worker_raises_its_error_and_the_pool_goes_on(pool: ChunkPool) -> None:
    with pytest.raises(ChunkPoolError, match=r"a chunking process failed: \w+Error"):
        await pool.prepare([None])  # type: ignore[list-item]
    assert (await pool.prepare(["Still chunking."])).texts == [["Still chunking."]]


async def test_the_tasks_of_a_killed_worker_fail_and_the_next_task_starts_another(
    pool: ChunkPool, texts: list[str]
) -> None:
    await pool.prepare(["Started."])
    (first,) = pool.pids()
    pending = asyncio.ensure_future(pool.prepare(texts * 4))
    await asyncio.sleep(0.05)  # handed to the worker, which chunks for a second or more
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ChunkPoolError, match="ended"):
        await pending
    assert (await pool.prepare(["Again."])).texts == [["Again."]]
    assert pool.pids() and first not in pool.pids()


async def test_the_work_is_spread_over_the_workers_and_close_ends_them(
    tokenizer: HFTokenizer, texts: list[str]
) -> None:
    two = ChunkPool(tokenizer, TokenSpec(model_dir() / "tokenizer.json", 256), 60, 10, workers=2)
    prepared = await two.prepare(texts * 2)
    assert len(prepared.texts) == 2 * len(texts)
    pids = two.pids()
    assert len(pids) == 2
    two.close()
    assert two.pids() == []
    for pid in pids:
        with pytest.raises(ChildProcessError):  # reaped: no longer a child
            os.waitpid(pid, os.WNOHANG)


def test_a_script_without_a_main_guard_can_use_the_pool(tmp_path: Path) -> None:
    """The workers are not spawned by multiprocessing, which would import such a script again in each of them."""
    script, tokenizer_file = tmp_path / "plain_script.py", str(model_dir() / "tokenizer.json")
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from pathlib import Path
            from plugkit.plugins.retrieval.chunk_pool import ChunkPool, ChunkPoolError, TokenSpec
            from plugkit.plugins.retrieval.chunking import minilm_tokenizer

            print("script body ran")
            pool = ChunkPool(minilm_tokenizer(), TokenSpec(Path({tokenizer_file!r}), 256), 60, 10, 2)
            prepared = asyncio.run(pool.prepare(["One sentence. Another one."] * 300))
            pool.close()
            print(len(prepared.texts))
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["script", "body", "ran", "300"]


async def stored(retriever: Retriever, store: EmbeddedStore, documents: list[Document]) -> dict[str, tuple[str, bytes]]:
    await retriever.open()
    await retriever.upsert(documents)
    rows = store.conn.execute("SELECT chunk_id, text, embedding FROM chunks").fetchall()
    await retriever.close()
    return {chunk_id: (text, embedding) for chunk_id, text, embedding in rows}


async def test_a_retriever_with_chunk_workers_stores_the_chunks_and_vectors_of_the_text_path(
    tmp_path: Path, tokenizer: HFTokenizer
) -> None:
    model = LocalEmbedder(batch_size=16, precision="fp32", query_backend="torch")
    documents = [Document(id=f"d{n}", text=t) for n, t in enumerate(scifact_texts(16) + EDGE_TEXTS[:4])]
    plain_store, pooled_store = EmbeddedStore(tmp_path / "plain"), EmbeddedStore(tmp_path / "pooled")
    plain = await stored(
        Retriever(plain_store, model, tokenizer, chunk_tokens=60, chunk_overlap=10), plain_store, documents
    )
    pooled_retriever = Retriever(pooled_store, model, tokenizer, chunk_tokens=60, chunk_overlap=10, chunk_workers=2)
    pooled = await stored(pooled_retriever, pooled_store, documents)
    assert pooled_retriever._chunk_pool is not None  # the ids path was taken
    assert plain.keys() == pooled.keys() and len(plain) > len(documents)
    for chunk_id, (text, embedding) in plain.items():
        assert pooled[chunk_id][0] == text
        np.testing.assert_allclose(
            np.frombuffer(pooled[chunk_id][1], dtype=np.float32), np.frombuffer(embedding, dtype=np.float32), atol=1e-6
        )
