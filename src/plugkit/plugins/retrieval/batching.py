"""Query micro-batching: the queries of concurrent /query requests answered together, as one batch.

A lone request starts its batch at once (with the requests already on their way in the event loop); while a batch is
being answered, the requests that arrive meanwhile gather into the next one, which waits at most `max_wait_s` (a
couple of milliseconds) for more company unless it is full. The batch's work function
(`Retriever.answer`) embeds all its texts in one forward pass, which costs a model on a CPU little more than a
single text, and runs all its searches in one call to the store (one hop to the store's thread, not one each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Waiting(Generic[T, R]):
    items: list[T]
    future: asyncio.Future[list[R]] = field(repr=False)


class QueryBatcher(Generic[T, R]):
    """Calls of `submit` made concurrently are answered by shared calls of `work`, each with at most `max_batch`
    items (one caller's items are never split). `work` returns one result per item, in order; an exception in
    place of a result goes to the caller of that item alone, an exception raised by `work` to every caller."""

    def __init__(
        self,
        work: Callable[[list[T]], Awaitable[list[R | Exception]]],
        *,
        max_wait_s: float = 0.002,
        max_batch: int = 64,
    ) -> None:
        if max_wait_s < 0 or max_batch < 1:
            raise ValueError("max_wait_s must be >= 0 and max_batch >= 1")
        self.work, self.max_wait_s, self.max_batch = work, max_wait_s, max_batch
        self._waiting: list[_Waiting[T, R]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # calls of `work` (for tests and benchmarks)

    async def submit(self, items: list[T]) -> list[R]:
        """The results of `items`, computed in a batch shared with other concurrent callers."""
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(list(items), future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def drain(self) -> None:
        """Wait until every submitted item is answered (at shutdown, before the store closes)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    def _pending_items(self) -> int:
        return sum(len(w.items) for w in self._waiting)

    def _take(self) -> list[_Waiting[T, R]]:
        """The waiting callers of the next batch, first come first served; one larger caller goes alone."""
        taken: list[_Waiting[T, R]] = []
        count = 0
        while self._waiting:
            size = len(self._waiting[0].items)
            if taken and count + size > self.max_batch:
                break
            taken.append(self._waiting.pop(0))
            count += size
        return taken

    async def _drain(self) -> None:
        idle = True  # no batch ran just before: nobody is queueing behind one, so waiting would only add latency
        while self._waiting:
            if idle:
                await asyncio.sleep(0)  # let the requests already in the event loop's queue join
                idle = False
            elif self._pending_items() < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)
            batch = [w for w in self._take() if not w.future.done()]  # a cancelled caller no longer waits
            if not batch:
                continue
            self.batches += 1
            try:
                results = await self.work([item for w in batch for item in w.items])
            except Exception as exc:  # every caller of the batch gets the error
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            position = 0
            for w in batch:
                mine = results[position : position + len(w.items)]
                position += len(w.items)
                if w.future.done():
                    continue
                failed = next((r for r in mine if isinstance(r, Exception)), None)
                if failed is not None:
                    w.future.set_exception(failed)
                else:
                    w.future.set_result(mine)  # type: ignore[arg-type]
