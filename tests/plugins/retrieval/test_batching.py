from __future__ import annotations

import asyncio

import pytest

from plugkit.plugins.retrieval.batching import QueryBatcher


class Doubler:
    """A batch work function that doubles numbers and records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(0.001)
        return [ValueError(f"{n} is negative") if n < 0 else 2 * n for n in items]


async def test_concurrent_callers_share_one_batch() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.01, max_batch=64)
    results = await asyncio.gather(*(batcher.submit([n]) for n in range(12)))
    assert work.batches == [list(range(12))]
    assert results == [[2 * n] for n in range(12)]


async def test_a_lone_caller_is_answered_without_waiting_for_company() -> None:
    batcher = QueryBatcher(Doubler(), max_wait_s=5.0)
    assert await asyncio.wait_for(batcher.submit([4]), 1.0) == [8]  # far sooner than the 5 s wait


async def test_callers_arriving_during_a_batch_gather_into_the_next_one() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.01)
    first = asyncio.create_task(batcher.submit([0]))
    await asyncio.sleep(0)  # the first batch starts
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.submit([n])) for n in range(1, 6)]
    await asyncio.gather(first, *later)
    assert work.batches == [[0], [1, 2, 3, 4, 5]]


async def test_each_caller_gets_the_results_of_its_own_items() -> None:
    batcher = QueryBatcher(Doubler(), max_wait_s=0.01)
    requests = [[1], [2, 3, 4], [5, 6]]
    assert await asyncio.gather(*(batcher.submit(r) for r in requests)) == [[2], [4, 6, 8], [10, 12]]


async def test_batches_hold_at_most_max_batch_items() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.01, max_batch=5)
    await asyncio.gather(*(batcher.submit([n]) for n in range(12)))
    assert sorted(n for batch in work.batches for n in batch) == list(range(12))
    assert max(len(batch) for batch in work.batches) <= 5


async def test_a_caller_larger_than_max_batch_goes_whole_and_alone() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.01, max_batch=2)
    small, large = await asyncio.gather(batcher.submit([1]), batcher.submit([2, 3, 4, 5]))
    assert (small, large) == ([2], [4, 6, 8, 10])
    assert work.batches == [[1], [2, 3, 4, 5]]


async def test_an_error_raised_by_the_work_reaches_every_caller_and_the_batcher_goes_on() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the model is down")
        return list(items)

    batcher = QueryBatcher(flaky, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit([n]) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await batcher.submit([7]) == [7]


async def test_an_error_in_place_of_a_result_reaches_only_its_caller() -> None:
    batcher = QueryBatcher(Doubler(), max_wait_s=0.01)
    good, bad, other = await asyncio.gather(
        batcher.submit([1]), batcher.submit([2, -3]), batcher.submit([4]), return_exceptions=True
    )
    assert good == [2] and other == [8]
    assert isinstance(bad, ValueError) and str(bad) == "-3 is negative"


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.02)
    doomed = asyncio.create_task(batcher.submit([1]))
    kept = asyncio.create_task(batcher.submit([2]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == [4]
    assert work.batches == [[2]]


async def test_nothing_submitted_returns_nothing_without_a_batch() -> None:
    batcher = QueryBatcher(Doubler())
    assert await batcher.submit([]) == []
    assert batcher.batches == 0


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        QueryBatcher(Doubler(), max_wait_s=-1)


async def test_drain_returns_once_every_submitted_item_is_answered() -> None:
    work = Doubler()
    batcher = QueryBatcher(work, max_wait_s=0.01, max_batch=4)
    callers = [asyncio.create_task(batcher.submit([n])) for n in range(10)]
    await asyncio.sleep(0)  # the callers submit
    await batcher.drain()
    assert all(c.done() for c in callers)
    assert [c.result() for c in callers] == [[2 * n] for n in range(10)]
