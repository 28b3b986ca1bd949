"""Counting failed secret guesses in the database, so every worker sees the same count."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, insert, select

from plugkit.auth import tables
from plugkit.auth.credentials import utcnow
from plugkit.storage import Database


class FailureLimiter:
    """Allows `limit` failures per key (a client, a user, an address) within `window_s` seconds."""

    def __init__(self, database: Database, limit: int, window_s: int) -> None:
        self.db, self.limit, self.window_s = database, limit, window_s

    async def blocked(self, *keys: str) -> bool:
        """Whether any of the keys has used up its failures in the current window."""
        since = utcnow() - timedelta(seconds=self.window_s)
        t = tables.auth_failures
        async with self.db.read() as session:
            for key in keys:
                count = (
                    await session.execute(
                        select(func.count()).select_from(t).where(t.c.key == key[:300], t.c.at > since)
                    )
                ).scalar_one()
                if count >= self.limit:
                    return True
        return False

    async def record(self, *keys: str) -> None:
        """Count one failure against each key (and forget the ones that left the window)."""
        now = utcnow()
        t = tables.auth_failures
        async with self.db.write() as session:
            await session.execute(delete(t).where(t.c.at <= now - timedelta(seconds=self.window_s)))
            await session.execute(insert(t), [{"key": key[:300], "at": now} for key in keys])
