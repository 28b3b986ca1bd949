"""The Database's SQLite path: writes wait for another process's lock on the event loop, checkpoints leave it."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, bindparam, insert, select

import plugkit.storage as storage
from plugkit.storage import Database

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", Text, nullable=False))


async def opened(path: Path) -> Database:
    database = Database(f"sqlite:///{path}")
    await database.create_all(metadata)
    return database


def add(text: str) -> Callable[[Connection], None]:
    def work(conn: Connection) -> None:
        conn.execute(insert(notes).values(text=text))

    return work


async def test_a_write_waits_for_another_connections_lock_while_the_loop_runs_on(tmp_path: Path) -> None:
    database = await opened(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)  # as another worker process would
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO notes (text) VALUES ('from the other process')")
    write = asyncio.create_task(database.run_write(add("mine")))
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.005)
        ticks += 1
    assert not write.done() and ticks == 20  # waiting, and the loop kept running meanwhile
    other.execute("COMMIT")
    await asyncio.wait_for(write, 5)
    texts = await database.run_read(lambda conn: [r[0] for r in conn.execute(select(notes.c.text))])
    assert texts == ["from the other process", "mine"]
    other.close()
    await database.dispose()


async def test_a_failed_write_rolls_back_and_the_next_one_commits(tmp_path: Path) -> None:
    database = await opened(tmp_path / "db.sqlite")

    def half_then_fail(conn: Connection) -> None:
        conn.execute(insert(notes).values(text="half"))
        raise ValueError("the work failed")

    with pytest.raises(ValueError, match="the work failed"):
        await database.run_write(half_then_fail)
    await database.run_write(add("whole"))
    texts = await database.run_read(lambda conn: [r[0] for r in conn.execute(select(notes.c.text))])
    assert texts == ["whole"]
    await database.dispose()


async def test_the_wal_is_checkpointed_into_the_database_file_every_so_many_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "CHECKPOINT_EVERY", 4)
    path = tmp_path / "db.sqlite"
    database = await opened(path)  # commit 1 (the tables)
    size_before = path.stat().st_size
    for n in range(2):  # commits 2 and 3: their pages stay in the WAL
        await database.run_write(add(f"{n}" * 20_000))
    assert path.stat().st_size == size_before
    await database.run_write(add("x" * 20_000))  # commit 4: checkpoint in a thread
    assert database._checkpoint is not None
    await database._checkpoint
    assert path.stat().st_size > size_before + 50_000
    await database.dispose()


async def test_a_write_gives_up_with_the_lock_error_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    database = await opened(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await database.run_write(add("never"))
    other.execute("ROLLBACK")
    other.close()
    await database.dispose()


async def test_a_prepared_write_commits_and_a_failed_one_leaves_nothing(tmp_path: Path) -> None:
    database = await opened(tmp_path / "db.sqlite")

    def half_then_fail(raw: sqlite3.Connection) -> None:
        raw.execute("INSERT INTO notes (text) VALUES ('half')")
        raise ValueError("the work failed")

    with pytest.raises(ValueError, match="the work failed"):
        await database.run_sqlite_write(half_then_fail)
    added = await database.run_sqlite_write(
        lambda raw: raw.execute("INSERT INTO notes (text) VALUES ('whole') RETURNING id").fetchone()[0]
    )
    reader = database.sqlite_reader()
    assert reader is not None
    assert reader.execute("SELECT id, text FROM notes").fetchall() == [(added, "whole")]
    await database.run_write(add("through SQLAlchemy"))  # the two write paths share the connection and its state
    texts = await database.run_read(lambda conn: [r[0] for r in conn.execute(select(notes.c.text))])
    assert texts == ["whole", "through SQLAlchemy"]
    await database.dispose()


async def test_a_prepared_write_waits_for_another_workers_lock(tmp_path: Path) -> None:
    database = await opened(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(
        database.run_sqlite_write(lambda raw: raw.execute("INSERT INTO notes (text) VALUES ('mine')"))
    )
    await asyncio.sleep(0.05)
    assert not write.done()
    other.execute("COMMIT")
    await asyncio.wait_for(write, 5)
    assert await database.run_read(lambda conn: conn.execute(select(notes.c.text)).scalar_one()) == "mine"
    other.close()
    await database.dispose()


async def test_postgresql_has_no_sqlite_reader_and_refuses_prepared_sqlite_writes() -> None:
    database = Database("postgresql://nobody@127.0.0.1:1/none")  # never connected
    assert database.sqlite_reader() is None
    assert await database.data_version() is None
    with pytest.raises(RuntimeError, match="run_write"):
        await database.run_sqlite_write(lambda raw: None)
    await database.dispose()


async def test_the_data_version_moves_when_another_connection_commits(tmp_path: Path) -> None:
    database = await opened(tmp_path / "db.sqlite")
    before = await database.data_version()
    assert before == await database.data_version()
    with sqlite3.connect(tmp_path / "db.sqlite") as other:
        other.execute("INSERT INTO notes (text) VALUES ('elsewhere')")
    assert await database.data_version() != before
    await database.dispose()


NOTE_BY_TEXT = storage.PreparedRead.of(select(notes.c.id, notes.c.text).where(notes.c.text == bindparam("text")))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_prepared_read_finds_the_first_matching_row_or_none_on_either_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url, schema=f"prepared_{uuid.uuid4().hex[:8]}")  # the PostgreSQL server is shared
    await database.create_all(metadata)
    try:
        await database.run_write(add("first"))
        await database.run_write(add("second"))
        assert await NOTE_BY_TEXT.first(database, text="second") == (2, "second")
        assert await NOTE_BY_TEXT.first(database, text="third") is None
        await database.run_write(add("third"))  # a row committed since is seen by the next read
        assert await NOTE_BY_TEXT.first(database, text="third") == (3, "third")
    finally:
        await database.dispose()
