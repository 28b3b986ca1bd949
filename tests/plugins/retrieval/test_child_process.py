"""The framing of the messages between plugkit and its helper processes, and the pool that drives them."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

import numpy as np
import pytest

from plugkit.plugins.retrieval.child_process import ProcessPool, frame, read_frame
from plugkit.plugins.retrieval.embeddings import pipeline
from plugkit.plugins.retrieval.embeddings.local import model_dir


def test_framed_messages_read_back_one_by_one_and_a_cut_stream_reads_as_its_end() -> None:
    values = [["a text", "another"], (np.arange(5, dtype=np.int32), 7), "an error"]
    stream = io.BytesIO(b"".join(frame(v) for v in values))
    first, (ids, seven), error = (read_frame(stream) for _ in values)
    assert first == values[0] and ids.tolist() == [0, 1, 2, 3, 4] and seven == 7 and error == "an error"
    assert read_frame(stream) is None
    cut = frame(["a text"])[:-1]
    assert read_frame(io.BytesIO(cut)) is None and read_frame(io.BytesIO(cut[:3])) is None


def test_a_process_pool_answers_in_order_over_its_processes_reports_errors_and_stops() -> None:
    """Driven from an event loop; the tokenizer processes of the embedding pipeline serve here."""
    model = model_dir()
    parts = [[f"text number {n}", "another text, longer than the first one"] for n in range(6)]
    pool = ProcessPool(pipeline.__name__, (str(model), 256), 2, name="tokenizing", error=LookupError)

    async def scenario() -> tuple[list[Any], list[int]]:
        answers = await pool.map(parts)
        running = pool.pids()
        with pytest.raises(LookupError, match=r"a tokenizing process failed: \w+Error"):
            await pool.call([1])  # not a list of texts
        assert sorted(pool.pids()) == sorted(running)  # the failure ended no process
        pending = asyncio.ensure_future(pool.call(["left when the pool stops"] * 5000))
        await asyncio.sleep(0)
        pool.close()
        with pytest.raises(LookupError, match="the tokenizing processes were stopped"):
            await pending
        return answers, running

    answers, running = asyncio.run(scenario())
    assert len(running) == 2 and os.getpid() not in running
    tokenizer = pipeline.fast_tokenizer(model, 256)
    for part, (flat, lengths) in zip(parts, answers, strict=True):
        expected_flat, expected_lengths = pipeline.flat_token_ids(tokenizer, part)
        assert flat.tolist() == expected_flat.tolist() and lengths.tolist() == expected_lengths.tolist()
    assert pool.pids() == []
    for pid in running:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
