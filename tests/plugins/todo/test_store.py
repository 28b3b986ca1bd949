"""The store's behaviour, run against both engines: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugkit.plugins.todo.store import SqlTodoStore, metadata
from plugkit.storage import Database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTodoStore]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'todo.db'}")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
    await database.create_all(metadata)
    try:
        yield SqlTodoStore(database)
    finally:
        await database.dispose()


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"  # the PostgreSQL server is shared by the session


async def test_add_then_list_keeps_insertion_order(store: SqlTodoStore) -> None:
    name = user()
    added = [await store.add(name, text) for text in ("one", "two", "three")]
    assert [i.todo for i in await store.list(name)] == ["one", "two", "three"]
    assert [i.id for i in await store.list(name)] == [i.id for i in added]


async def test_delete_at_removes_only_that_index(store: SqlTodoStore) -> None:
    name = user()
    for text in ("one", "two", "three"):
        await store.add(name, text)
    deleted = await store.delete_at(name, 1)
    assert deleted is not None and deleted.todo == "two"
    assert [i.todo for i in await store.list(name)] == ["one", "three"]


async def test_delete_at_out_of_range_changes_nothing(store: SqlTodoStore) -> None:
    name = user()
    await store.add(name, "one")
    assert await store.delete_at(name, 1) is None
    assert await store.delete_at(name, -1) is None
    assert await store.delete_at(name, 2**63) is None
    assert [i.todo for i in await store.list(name)] == ["one"]


async def test_delete_by_id_is_scoped_to_the_user(store: SqlTodoStore) -> None:
    alice, bob = user(), user()
    item = await store.add(alice, "secret")
    assert await store.delete_by_id(bob, item.id) is None
    assert await store.delete_by_id(alice, item.id) == item
    assert await store.list(alice) == []


async def test_user_exists_only_after_a_first_todo(store: SqlTodoStore) -> None:
    name = user()
    assert not await store.user_exists(name)
    await store.add(name, "x")
    assert await store.user_exists(name)


async def test_concurrent_writers_lose_nothing(store: SqlTodoStore) -> None:
    name = user()
    await asyncio.gather(*(store.add(name, f"todo {i}") for i in range(100)))
    assert sorted(i.todo for i in await store.list(name)) == sorted(f"todo {i}" for i in range(100))


async def test_concurrent_deletes_of_the_same_index_remove_exactly_as_many_items(store: SqlTodoStore) -> None:
    name = user()
    for i in range(10):
        await store.add(name, f"todo {i}")
    results = await asyncio.gather(*(store.delete_at(name, 0) for _ in range(5)))
    deleted = [r for r in results if r is not None]
    remaining = await store.list(name)
    assert len(deleted) + len(remaining) == 10
    assert {d.todo for d in deleted}.isdisjoint({r.todo for r in remaining})


async def test_a_todo_reads_back_with_the_time_it_was_added_on_every_read_path(store: SqlTodoStore) -> None:
    added = await store.add("alice", "dated")
    (listed,) = await store.list("alice")
    assert listed == added
    assert await store.delete_at("alice", 0) == added  # read back through SQLAlchemy's own types
    again = await store.add("alice", "dated again")
    assert await store.delete_by_id("alice", again.id) == again
    assert await store.delete_by_id("alice", again.id) is None


async def test_a_list_read_again_sees_every_write_of_this_or_another_store_on_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = Database(url), Database(url)  # two workers' databases on one file
    await first.create_all(metadata)
    mine, other = SqlTodoStore(first), SqlTodoStore(second)
    try:
        await mine.add("ada", "one")
        assert [i.todo for i in await mine.list("ada")] == ["one"]
        assert len(mine.pages) == 1  # the page is kept
        await other.add("ada", "two")  # another process's commit
        assert [i.todo for i in await mine.list("ada")] == ["one", "two"]
        added = await mine.add("ada", "three")
        assert [i.todo for i in await mine.list("ada")] == ["one", "two", "three"]
        await other.delete_by_id("ada", added.id)
        assert [i.todo for i in await mine.list("ada")] == ["one", "two"]
        page = await mine.list("ada")
        page.clear()  # a caller's change to its answer is not the next caller's
        assert [i.todo for i in await mine.list("ada")] == ["one", "two"]
    finally:
        await first.dispose()
        await second.dispose()
