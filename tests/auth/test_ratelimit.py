"""Failed-attempt counting shared through the database, on the one windowed counter."""

from __future__ import annotations

from pathlib import Path

from plugkit import ratelimit
from plugkit.ratelimit import FailureLimiter
from plugkit.storage import Database


async def test_failures_recorded_by_one_worker_block_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    first, second = Database(url), Database(url)
    await first.create_all(ratelimit.metadata)
    worker_a, worker_b = FailureLimiter(first, 2, 60), FailureLimiter(second, 2, 60)
    await worker_a.record("client:c1", "addr:10.0.0.1")
    assert not await worker_b.blocked("client:c1")
    await worker_b.record("client:c1", "addr:10.0.0.2")
    assert await worker_a.blocked("client:c1")
    assert await worker_a.blocked("client:other", "client:c1")
    assert not await worker_a.blocked("addr:10.0.0.1")
    await first.dispose()
    await second.dispose()


async def test_failures_of_an_ended_window_no_longer_count(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    await database.create_all(ratelimit.metadata)
    limiter = FailureLimiter(database, 1, 60)
    await limiter.record("user:alice")
    assert await limiter.blocked("user:alice")
    async with database.write() as session:
        await session.execute(ratelimit.counts.update().values(window=ratelimit.counts.c.window - 60))
    assert not await limiter.blocked("user:alice")
    await database.dispose()


async def test_failures_and_requests_with_the_same_key_are_counted_apart(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    await database.create_all(ratelimit.metadata)
    failures, requests = FailureLimiter(database, 1, 60), ratelimit.RequestRateLimiter(database, 1)
    assert (await requests.hit("10.0.0.1"))[0]
    assert not await failures.blocked("10.0.0.1")
    await database.dispose()
