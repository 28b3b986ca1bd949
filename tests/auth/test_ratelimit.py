"""Failed-attempt counting shared through the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from plugkit.auth import tables
from plugkit.auth.credentials import utcnow
from plugkit.auth.ratelimit import FailureLimiter
from plugkit.storage import Database


async def test_failures_recorded_by_one_worker_block_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    first, second = Database(url), Database(url)
    await first.create_all(tables.metadata)
    worker_a, worker_b = FailureLimiter(first, 2, 60), FailureLimiter(second, 2, 60)
    await worker_a.record("client:c1", "addr:10.0.0.1")
    assert not await worker_b.blocked("client:c1")
    await worker_b.record("client:c1", "addr:10.0.0.2")
    assert await worker_a.blocked("client:c1")
    assert await worker_a.blocked("client:other", "client:c1")
    assert not await worker_a.blocked("addr:10.0.0.1")
    await first.dispose()
    await second.dispose()


async def test_failures_older_than_the_window_no_longer_count(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'auth.db'}")
    await database.create_all(tables.metadata)
    limiter = FailureLimiter(database, 1, 60)
    await limiter.record("user:alice")
    assert await limiter.blocked("user:alice")
    async with database.write() as session:
        await session.execute(update(tables.auth_failures).values(at=utcnow() - timedelta(seconds=61)))
    assert not await limiter.blocked("user:alice")
    await database.dispose()
