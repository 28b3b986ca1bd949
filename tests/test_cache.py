"""Answer caches: kept for a while (TTLCache) or until the database changes (DatabaseCache)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from plugkit.cache import DatabaseCache, TTLCache
from plugkit.storage import Database


def test_a_ttl_cache_forgets_answers_after_their_time_and_keeps_the_newest_when_full() -> None:
    now = [0.0]
    cache = TTLCache(10, 2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None and cache.get("b") == 2 and len(cache) == 2
    now[0] = 10.0
    assert cache.get("c") is None


async def counted(database: Database) -> tuple[DatabaseCache, list[int], list[list[int]]]:
    """A cache over `database`, the calls of its computation, and the answers of two lookups of one key."""
    calls: list[int] = []
    cache = DatabaseCache(database, 8)
    answers = [await cache.get("k", lambda: _answer(calls)) for _ in range(2)]
    return cache, calls, answers


async def test_answers_from_sqlite_are_kept_until_another_connection_commits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    database, writer = Database(url), Database(url)
    table = sa.Table("t", sa.MetaData(), sa.Column("x", sa.Integer))
    await database.create_all(table.metadata)
    try:
        cache, calls, answers = await counted(database)
        assert answers == [[1], [1]] and len(calls) == 1 and len(cache) == 1
        await writer.run_write(lambda conn: conn.execute(table.insert().values(x=1)))
        assert await cache.get("k", lambda: _answer(calls)) == [2]
    finally:
        await database.dispose()
        await writer.dispose()


async def _answer(calls: list[int]) -> list[int]:
    calls.append(1)
    return [len(calls)]


async def test_nothing_is_kept_from_a_database_without_a_data_version(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        cache, calls, answers = await counted(database)
        assert answers == [[1], [2]] and len(calls) == 2 and len(cache) == 0
    finally:
        await database.dispose()
