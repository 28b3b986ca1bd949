"""Persistent TODO storage: one SQLAlchemy code path for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
)

from plugkit.cache import DatabaseCache
from plugkit.plugins.todo.models import TodoItem
from plugkit.schema import versioned
from plugkit.storage import Database

metadata = versioned(MetaData(), "todo", "plugkit.plugins.todo:migrations")
todos = Table(
    "todos",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("username", String(200), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# The hot queries, built once: building a statement per call costs more than SQLite takes to run it.
NO_LIMIT = 2**31 - 1
ITEM_COLUMNS = (todos.c.id, todos.c.text, todos.c.created_at)  # the shape _item reads
LIST = (
    select(*ITEM_COLUMNS)
    .where(todos.c.username == bindparam("username"))
    .order_by(todos.c.id)
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
COUNT = select(func.count()).select_from(todos).where(todos.c.username == bindparam("username"))
ADD = insert(todos).returning(todos.c.id)
# The list on SQLite, as one prepared statement on the worker's read connection (see Database.sqlite_reader); the
# column order is the one _item reads, created_at as SQLAlchemy stores it ("YYYY-MM-DD HH:MM:SS.ffffff", UTC).
LIST_SQLITE = "SELECT id, text, created_at FROM todos WHERE username = ? ORDER BY id LIMIT ? OFFSET ?"
ADD_SQLITE = "INSERT INTO todos (username, text, created_at) VALUES (?, ?, ?) RETURNING id"
DELETE_BY_ID_SQLITE = "DELETE FROM todos WHERE username = ? AND id = ? RETURNING id, text, created_at"
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite

T = TypeVar("T")


class TodoStore(Protocol):
    async def add(self, username: str, text: str) -> TodoItem: ...
    async def list(self, username: str, offset: int = 0, limit: int | None = None) -> list[TodoItem]: ...
    async def count(self, username: str) -> int: ...
    async def user_exists(self, username: str) -> bool: ...
    async def delete_at(self, username: str, index: int) -> TodoItem | None: ...
    async def delete_by_id(self, username: str, todo_id: int) -> TodoItem | None: ...
    async def kept(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T: ...


def _item(row: Sequence[Any]) -> TodoItem:
    todo_id, text, created = row  # by position: a Row's attribute lookup costs more than building the item
    if created.tzinfo is None:  # SQLite keeps no zone; everything is stored in UTC
        created = created.replace(tzinfo=UTC)
    return TodoItem(id=todo_id, todo=text, created_at=created)


class SqlTodoStore:
    """Todos in a relational database; every write is one transaction. Pages of lists read from SQLite are kept
    until the database changes (`DatabaseCache`: a repeated read costs one PRAGMA, not a query and its items)."""

    def __init__(self, database: Database, cache_size: int = 1024) -> None:
        self.db = database
        self.pages = DatabaseCache(database, cache_size)

    async def kept(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute`'s answer (derived from the todos: a rendered page, say), kept until the database changes;
        computed every time on PostgreSQL. A key names what it is for, apart from the store's own (username, offset,
        limit) pages: a tuple led by a string."""
        return await self.pages.get(key, compute)

    async def add(self, username: str, text: str) -> TodoItem:
        now = datetime.now(UTC)
        if self.db.is_sqlite:  # the hot write as one prepared statement (Database.run_sqlite_write)
            stored = now.strftime(SQLITE_TIME)
            added = await self.db.run_sqlite_write(
                lambda raw: int(raw.execute(ADD_SQLITE, (username, text, stored)).fetchone()[0])
            )
            return TodoItem(id=added, todo=text, created_at=now)

        def work(conn: Connection) -> int:
            return int(conn.execute(ADD, {"username": username, "text": text, "created_at": now}).scalar_one())

        return TodoItem(id=await self.db.run_write(work), todo=text, created_at=now)

    async def list(self, username: str, offset: int = 0, limit: int | None = None) -> list[TodoItem]:
        reader = self.db.sqlite_reader()
        if reader is not None:

            async def read() -> list[TodoItem]:
                rows = reader.execute(LIST_SQLITE, (username, NO_LIMIT if limit is None else limit, offset)).fetchall()
                return [_item((i, text, datetime.fromisoformat(created))) for i, text, created in rows]

            return await self.pages.get((username, offset, limit), read)
        params = {"username": username, "offset": offset, "limit": NO_LIMIT if limit is None else limit}
        return await self.db.run_read(lambda conn: [_item(r) for r in conn.execute(LIST, params)])

    async def count(self, username: str) -> int:
        return await self.db.run_read(lambda conn: int(conn.execute(COUNT, {"username": username}).scalar_one()))

    async def user_exists(self, username: str) -> bool:
        query = select(todos.c.id).where(todos.c.username == username).limit(1)
        return await self.db.run_read(lambda conn: conn.execute(query).first() is not None)

    async def delete_at(self, username: str, index: int) -> TodoItem | None:
        def work(conn: Connection) -> TodoItem | None:
            count = conn.execute(
                select(func.count()).select_from(todos).where(todos.c.username == username)
            ).scalar_one()
            if not 0 <= index < count:
                return None
            query = (
                select(*ITEM_COLUMNS).where(todos.c.username == username).order_by(todos.c.id).offset(index).limit(1)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:  # deleted by a concurrent transaction after the count
                return None
            conn.execute(delete(todos).where(todos.c.id == row[0]))
            return _item(row)

        return await self.db.run_write(work)

    async def delete_by_id(self, username: str, todo_id: int) -> TodoItem | None:
        if self.db.is_sqlite:  # one prepared statement (Database.run_sqlite_write)
            row = await self.db.run_sqlite_write(
                lambda raw: raw.execute(DELETE_BY_ID_SQLITE, (username, todo_id)).fetchone()
            )
            return None if row is None else _item((row[0], row[1], datetime.fromisoformat(row[2])))
        query = delete(todos).where(todos.c.username == username, todos.c.id == todo_id).returning(*ITEM_COLUMNS)

        def work(conn: Connection) -> TodoItem | None:
            row = conn.execute(query).first()
            return _item(row) if row is not None else None

        return await self.db.run_write(work)
