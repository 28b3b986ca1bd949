"""Database engine and session helpers shared by plugins: one code path for SQLite (aiosqlite) and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, Select, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from plugkit import schema

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Pick the async driver for a plain URL: sqlite -> aiosqlite, postgresql -> psycopg."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """A database for plugins: SQLAlchemy Core work written once as a sync function of a Connection, run by
    `run_read`/`run_write` on either engine, plus async ORM sessions (`read`/`write`).

    On PostgreSQL the function runs over the async driver (`AsyncConnection.run_sync`). On SQLite it runs directly on
    a sync connection: a SQLite call takes microseconds, far less than aiosqlite's hop to its thread and back, so it
    does not hold up the event loop. Writes take SQLite's write lock up front (BEGIN IMMEDIATE), so concurrent writers,
    also in other worker processes, queue on the busy timeout instead of failing on a lock upgrade."""

    def __init__(self, url: str, *, echo: bool = False, schema: str | None = None) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # A SQLite file belongs to one plugin already; on a shared PostgreSQL database each plugin names its own
        # schema, and every connection of this Database sees that schema alone (tables are created there).
        self.schema = None if self.is_sqlite else schema
        if self.schema is not None and not SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"{self.schema!r} is not a schema name (letters, digits and _, at most 63)")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
            if self.schema is not None:
                kwargs["connect_args"] = {"options": f"-csearch_path={self.schema}"}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self.sync_engine: Engine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
            sync_url = parsed.set(drivername="sqlite+pysqlite")
            self.sync_engine = create_engine(sync_url, connect_args={"timeout": 30, "check_same_thread": False})
            _configure_sqlite(self.sync_engine)
        # SQLite work runs on the event loop's thread, one call at a time, so each process keeps one connection
        # for reads and one for writes instead of checking one out of the pool per call.
        self._sqlite_connections: dict[bool, Connection] = {}
        self._sqlite_raw: dict[bool, tuple[Connection, sqlite3.Connection]] = {}
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self.engine.execution_options(plugkit_write=True), expire_on_commit=False)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection for reads (on SQLite each statement sees its own consistent snapshot)."""
        if self.sync_engine is not None:
            # No BEGIN: each statement reads a consistent snapshot of its own, and skipping the transaction
            # round trip roughly halves the cost of a one-statement read.
            return work(self._sqlite_connection(write=False))
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction: committed when it returns, rolled back when it raises."""
        if self.sync_engine is not None:
            sqlite = self._sqlite_connection(write=True)
            await _begin_immediate(self._raw(sqlite, write=True))
            with sqlite.begin():  # joins the transaction just opened; commits or rolls it back
                result = work(sqlite)
            self._after_commit()
            return result
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def run_sqlite_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """On SQLite only: run `work` on the driver connection this process writes through, in one write transaction
        taken as `run_write` takes it (BEGIN IMMEDIATE, waiting for another worker's lock on the event loop), committed
        when it returns and rolled back when it raises. For a hot one-statement write as a prepared statement."""
        if self.sync_engine is None:
            raise RuntimeError("run_sqlite_write is for SQLite databases; use run_write")
        raw = self._raw(self._sqlite_connection(write=True), write=True)
        await _begin_immediate(raw)
        try:
            result = work(raw)
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")
        self._after_commit()
        return result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads."""
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on any error."""
        async with self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def create_all(self, *metadatas: MetaData) -> None:
        """Create the tables that do not exist yet, and migrate a versioned group (plugkit.schema) to its newest
        revision (raising SchemaTooNewError for a database a newer plugkit wrote). Idempotent, and safe when several
        workers start at once: on SQLite the write lock serialises them; on PostgreSQL a worker that loses the race
        finds the tables on retry. A plugin's schema with none of a group's tables gets those release 0.1.0 wrote in
        `public` first (plugkit.schema.adopt_public)."""

        def work(conn: Connection) -> None:
            if self.schema is not None:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            for metadata in metadatas:
                if schema.INFO_KEY in metadata.info:
                    if self.schema is not None:
                        schema.adopt_public(conn, metadata, self.schema)  # release 0.1.0 kept them in public
                    schema.upgrade(conn, metadata)
                else:
                    metadata.create_all(conn, checkfirst=True)

        for attempt in range(3):
            try:
                await self.run_write(work)
                return
            except DBAPIError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))

    def sqlite_reader(self) -> sqlite3.Connection | None:
        """On SQLite, the driver connection this process reads through, for a hot read as a plain prepared statement
        (sqlite3 keeps them compiled per connection): no thread hop, no SQLAlchemy execution. None on PostgreSQL,
        where `run_read` is the way."""
        if self.sync_engine is None:
            return None
        return self._raw(self._sqlite_connection(write=False), write=False)

    def _raw(self, conn: Connection, *, write: bool) -> sqlite3.Connection:
        """The driver connection under one of the process's SQLAlchemy connections, looked up once (SQLAlchemy's
        lookup through its pool costs more than a short statement)."""
        cached = self._sqlite_raw.get(write)
        if cached is None or cached[0] is not conn:
            cached = self._sqlite_raw[write] = (conn, _driver(conn))
        return cached[1]

    async def data_version(self) -> int | None:
        """On SQLite, a number that changes whenever another connection (another worker, an import) commits to the
        file (PRAGMA data_version), to know when something derived from it is stale; None on PostgreSQL."""
        reader = self.sqlite_reader()
        return None if reader is None else int(reader.execute("PRAGMA data_version").fetchone()[0])

    async def ping(self) -> None:
        """Run a trivial statement: raises when the database does not answer (readiness checks use it)."""
        await self.run_read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())

    def _sqlite_connection(self, *, write: bool) -> Connection:
        conn = self._sqlite_connections.get(write)
        if conn is None or conn.closed or conn.invalidated:
            assert self.sync_engine is not None
            option = {"plugkit_write": True} if write else {"plugkit_autocommit_reads": True}
            conn = self._sqlite_connections[write] = self.sync_engine.connect().execution_options(**option)
            if write:
                raw = _driver(conn)
                raw.execute("PRAGMA busy_timeout=0")  # _begin_immediate waits for the lock, on the event loop
                raw.execute("PRAGMA wal_autocheckpoint=0")  # _after_commit checkpoints, off the event loop
        return conn

    def _after_commit(self) -> None:
        """Every CHECKPOINT_EVERY commits, copy the WAL back into the database file in a thread. SQLite's automatic
        checkpoint would do it inside a commit, with two fsyncs, while the event loop waits."""
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY or (self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._checkpoint = asyncio.get_running_loop().create_task(asyncio.to_thread(self._checkpoint_sync))

    def _checkpoint_sync(self) -> None:
        assert self.sync_engine is not None
        raw = self.sync_engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for readers or writers
        finally:
            raw.close()

    async def dispose(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        await self.engine.dispose()
        for conn in self._sqlite_connections.values():
            conn.close()
        self._sqlite_connections.clear()
        self._sqlite_raw.clear()
        if self.sync_engine is not None:
            self.sync_engine.dispose()


SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SQLITE_BUSY_TIMEOUT_S = 30.0
CHECKPOINT_EVERY = 1000  # commits of one process between WAL checkpoints (SQLite's own default is 1000 pages)


def _driver(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


async def _begin_immediate(raw: sqlite3.Connection) -> None:
    """Open a write transaction on a SQLite connection whose busy timeout is 0. While another process holds the
    write lock, wait on the event loop and try again: SQLite's own busy handler would sleep in the loop's thread,
    a millisecond or more at a time, stalling every other request of the worker."""
    attempt, deadline = 0, time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
        # A write holds the lock for tens of microseconds: first just let the loop run other requests, then back off.
        attempt += 1
        await asyncio.sleep(0 if attempt <= 20 else min(0.0005 * 2 ** (attempt - 21), 0.005))


def _configure_sqlite(sync_engine: Engine) -> None:

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes in WAL mode
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.connection.driver_connection.in_transaction:
            return  # opened by _begin_immediate
        if conn.get_execution_options().get("plugkit_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not conn.get_execution_options().get("plugkit_autocommit_reads", False):
            conn.exec_driver_sql("BEGIN")


@dataclass(frozen=True)
class PreparedRead:
    """A hot read of one shape: the SQLAlchemy statement (run as is on PostgreSQL) and its SQLite text, compiled from
    it once and run as a prepared statement on the worker's read connection (`Database.sqlite_reader`: no thread hop,
    no SQLAlchemy execution; sqlite3 keeps it compiled). Parameters are `bindparam`s, passed by name; `keys` are the
    names of the columns it selects, in order. On SQLite the rows hold the driver's values (a DateTime column comes
    back as its ISO text)."""

    statement: Select[Any]
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of the text's placeholders
    keys: tuple[str, ...]

    @classmethod
    def of(cls, statement: Select[Any]) -> PreparedRead:
        compiled = statement.compile(dialect=sqlite.dialect())
        keys = tuple(statement.selected_columns.keys())
        return cls(statement, compiled.string, tuple(compiled.positiontup or ()), keys)

    async def rows(self, db: Database, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row the read finds."""
        reader = db.sqlite_reader()
        if reader is not None:  # microseconds on the event loop's thread, as run_read runs SQLite work
            return reader.execute(self.sql, [params[name] for name in self.names]).fetchall()
        return await db.run_read(lambda conn: conn.execute(self.statement, params).all())

    async def first(self, db: Database, **params: Any) -> tuple[Any, ...] | None:
        """The first row of a read that finds at most a few (a lookup by a unique key), or None."""
        found = await self.rows(db, params)
        return tuple(found[0]) if found else None
