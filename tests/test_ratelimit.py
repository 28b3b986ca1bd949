"""The windowed counter and the limits on it: requests on both engines (a SQLite file and a real PostgreSQL server),
failed attempts shared by workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugkit import ratelimit
from plugkit.ratelimit import FailureLimiter
from plugkit.storage import Database


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'rl.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    await db.create_all(ratelimit.metadata)
    try:
        yield db
    finally:
        await db.dispose()


async def test_the_limit_allows_exactly_per_minute_requests_per_address(database: Database) -> None:
    limiter = ratelimit.RequestRateLimiter(database, per_minute=5)
    address, other = f"203.0.113.{uuid.uuid4().int % 250}", f"addr-{uuid.uuid4().hex}"
    results = [await limiter.hit(address) for _ in range(6)]
    assert [allowed for allowed, _ in results] == [True] * 5 + [False]
    assert all(1 <= retry <= 61 for _, retry in results)
    assert (await limiter.hit(other))[0] is True


async def test_concurrent_hits_are_all_counted(database: Database) -> None:
    limiter = ratelimit.RequestRateLimiter(database, per_minute=1000)
    address = f"addr-{uuid.uuid4().hex}"
    await asyncio.gather(*(limiter.hit(address) for _ in range(50)))
    allowed, _ = await limiter.hit(address)
    assert allowed
    limiter.per_minute = 51
    assert (await limiter.hit(address))[0] is False


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


async def test_failures_made_just_before_a_fixed_window_ended_still_count_after_it(database: Database) -> None:
    limiter = FailureLimiter(database, 2, 60)
    key = f"user:{uuid.uuid4().hex}"
    await limiter.record(key)
    async with database.write() as session:  # that failure was made half a window ago, in the window before
        await session.execute(ratelimit.counts.update().values(window=ratelimit.counts.c.window - 30))
    await limiter.record(key)
    assert await limiter.blocked(key)  # two failures within the last minute
    async with database.write() as session:  # now both are older than a window
        await session.execute(ratelimit.counts.update().values(window=ratelimit.counts.c.window - 60))
    assert not await limiter.blocked(key)


async def test_failures_and_requests_with_the_same_key_are_counted_apart(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    await database.create_all(ratelimit.metadata)
    failures, requests = FailureLimiter(database, 1, 60), ratelimit.RequestRateLimiter(database, 1)
    assert (await requests.hit("10.0.0.1"))[0]
    assert not await failures.blocked("10.0.0.1")
    await database.dispose()
