"""Persistent TODO storage: one SQLAlchemy code path for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from plugkit.plugins.todo.models import TodoItem
from plugkit.storage import Database

metadata = MetaData()
todos = Table(
    "todos",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("username", String(200), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class TodoStore(Protocol):
    async def add(self, username: str, text: str) -> TodoItem: ...
    async def list(self, username: str) -> list[TodoItem]: ...
    async def user_exists(self, username: str) -> bool: ...
    async def delete_at(self, username: str, index: int) -> TodoItem | None: ...
    async def delete_by_id(self, username: str, todo_id: int) -> TodoItem | None: ...


def _item(row: object) -> TodoItem:
    created = row.created_at  # type: ignore[attr-defined]
    if created.tzinfo is None:  # SQLite keeps no zone; everything is stored in UTC
        created = created.replace(tzinfo=UTC)
    return TodoItem(id=row.id, todo=row.text, created_at=created)  # type: ignore[attr-defined]


class SqlTodoStore:
    """Todos in a relational database; every write is one transaction."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, username: str, text: str) -> TodoItem:
        now = datetime.now(UTC)
        async with self.db.write() as session:
            result = await session.execute(
                insert(todos).values(username=username, text=text, created_at=now).returning(todos.c.id)
            )
            new_id = result.scalar_one()
        return TodoItem(id=new_id, todo=text, created_at=now)

    async def list(self, username: str) -> list[TodoItem]:
        async with self.db.read() as session:
            rows = await session.execute(select(todos).where(todos.c.username == username).order_by(todos.c.id))
            return [_item(r) for r in rows]

    async def user_exists(self, username: str) -> bool:
        async with self.db.read() as session:
            found = await session.execute(select(todos.c.id).where(todos.c.username == username).limit(1))
            return found.first() is not None

    async def delete_at(self, username: str, index: int) -> TodoItem | None:
        async with self.db.write() as session:
            count = (
                await session.execute(select(func.count()).select_from(todos).where(todos.c.username == username))
            ).scalar_one()
            if not 0 <= index < count:
                return None
            query = select(todos).where(todos.c.username == username).order_by(todos.c.id).offset(index).limit(1)
            if not self.db.is_sqlite:
                query = query.with_for_update()
            row = (await session.execute(query)).first()
            if row is None:  # deleted by a concurrent transaction after the count
                return None
            await session.execute(delete(todos).where(todos.c.id == row.id))
            return _item(row)

    async def delete_by_id(self, username: str, todo_id: int) -> TodoItem | None:
        async with self.db.write() as session:
            rows = await session.execute(
                delete(todos)
                .where(todos.c.username == username, todos.c.id == todo_id)
                .returning(todos.c.id, todos.c.text, todos.c.created_at)
            )
            row = rows.first()
            return _item(row) if row is not None else None
