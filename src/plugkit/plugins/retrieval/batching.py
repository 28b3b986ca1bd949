"""Query micro-batching: concurrent query embeddings gathered into one forward pass of the model.

A request's texts wait at most `max_wait_s` (a couple of milliseconds) for company before a batch starts; while a
batch is being embedded, the requests that arrive meanwhile gather into the next one. Under load this turns 32
single-text forward passes into one pass of 32 texts, which costs a model on a CPU little more than one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from plugkit.plugins.retrieval.embeddings.base import Embedder


@dataclass
class _Waiting:
    texts: list[str]
    future: asyncio.Future[list[list[float]]] = field(repr=False)


class QueryBatcher:
    """Wraps an embedder: `embed_queries` calls made concurrently share batches of at most `max_batch` texts."""

    def __init__(self, embedder: Embedder, *, max_wait_s: float = 0.002, max_batch: int = 64) -> None:
        if max_wait_s < 0 or max_batch < 1:
            raise ValueError("max_wait_s must be >= 0 and max_batch >= 1")
        self.embedder, self.max_wait_s, self.max_batch = embedder, max_wait_s, max_batch
        self._waiting: list[_Waiting] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes asked of the embedder (for tests and benchmarks)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """The embeddings of `texts`, computed in a batch shared with other concurrent callers."""
        if not texts:
            return []
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(list(texts), future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    def _pending_texts(self) -> int:
        return sum(len(w.texts) for w in self._waiting)

    def _take(self) -> list[_Waiting]:
        """The waiting requests of the next batch, first come first served; one larger request goes alone."""
        taken: list[_Waiting] = []
        count = 0
        while self._waiting:
            size = len(self._waiting[0].texts)
            if taken and count + size > self.max_batch:
                break
            taken.append(self._waiting.pop(0))
            count += size
        return taken

    async def _drain(self) -> None:
        while self._waiting:
            if self._pending_texts() < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
            batch = [w for w in self._take() if not w.future.done()]  # a cancelled caller no longer waits
            if not batch:
                continue
            texts = [t for w in batch for t in w.texts]
            self.batches += 1
            try:
                vectors = await self.embedder.embed_queries(texts)
            except Exception as exc:  # every caller of the batch gets the embedder's error
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            position = 0
            for w in batch:
                if not w.future.done():
                    w.future.set_result(vectors[position : position + len(w.texts)])
                position += len(w.texts)
