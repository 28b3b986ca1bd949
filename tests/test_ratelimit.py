"""The request counter on both engines: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugkit import ratelimit
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
