"""One windowed counter in the plugin's database (so several workers share each count), and the limits built on it:
the request rate limit per client address, the failed-secret limit of the auth methods, the registration limit."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from plugkit.schema import versioned
from plugkit.storage import Database

WINDOW_S = 60
FAILURE_STEPS = 10  # a failure window is counted in this many steps, so that it slides (FailureLimiter)
metadata = versioned(MetaData(), "ratelimit", "plugkit:migrations/ratelimit")
counts = Table(
    "plugkit_counts",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("window", BigInteger, primary_key=True),  # the window's start, in seconds since the epoch
    Column("ends", BigInteger, nullable=False, index=True),
    Column("count", Integer, nullable=False),
)


# On SQLite the count is one prepared statement on the worker's write connection (Database.run_sqlite_write): the
# rate limit runs it on every request of a counted address.
ADD_SQLITE = (
    'INSERT INTO plugkit_counts ("key", "window", "ends", "count") VALUES (?, ?, ?, 1) '
    'ON CONFLICT ("key", "window") DO UPDATE SET "count" = "count" + 1 RETURNING "count"'
)
CLEAR_SQLITE = 'DELETE FROM plugkit_counts WHERE "ends" <= ?'


class WindowedCounter:
    """Counts events per key in fixed windows of `window_s` seconds, each count kept `keep_s` seconds from its
    window's start (at least the window). Keys carry their purpose as a prefix (`req:`, `fail:`, `reg:`), so the
    limits share one table without sharing counts."""

    def __init__(self, database: Database, window_s: int, keep_s: int = 0) -> None:
        self.db, self.window_s = database, max(1, window_s)
        self.keep_s = max(self.window_s, keep_s)

    def _window(self, now: float) -> int:
        return int(now // self.window_s) * self.window_s

    def retry_after(self, now: float | None = None) -> int:
        """Seconds until the current window ends."""
        now = time.time() if now is None else now
        return int(self._window(now) + self.window_s - now) + 1

    async def add(self, *keys: str) -> list[int]:
        """Count one event against each key; the counts in the current window, this one included."""
        now = time.time()
        window = self._window(now)
        if self.db.is_sqlite:

            def prepared(raw: sqlite3.Connection) -> list[int]:
                found = [
                    int(raw.execute(ADD_SQLITE, (key[:300], window, window + self.keep_s)).fetchone()[0])
                    for key in keys
                ]
                if found and found[0] == 1:  # the first event of a window clears the windows that have ended
                    raw.execute(CLEAR_SQLITE, (int(now),))
                return found

            return await self.db.run_sqlite_write(prepared)
        insert = pg_insert

        def work(conn: Connection) -> list[int]:
            found = []
            for key in keys:
                statement = (
                    insert(counts)
                    .values(key=key[:300], window=window, ends=window + self.keep_s, count=1)
                    .on_conflict_do_update(index_elements=["key", "window"], set_={"count": counts.c.count + 1})
                    .returning(counts.c.count)
                )
                found.append(int(conn.execute(statement).scalar_one()))
            if found and found[0] == 1:  # the first event of a window clears the windows that have ended
                conn.execute(delete(counts).where(counts.c.ends <= int(now)))
            return found

        return await self.db.run_write(work)

    async def recent(self, keys: Sequence[str], seconds: int) -> list[int]:
        """The counts of the keys over the windows that began in the last `seconds` (the current one included)."""
        first = self._window(time.time()) + self.window_s - max(seconds, self.window_s)
        trimmed = [key[:300] for key in keys]
        total = func.sum(counts.c.count)
        query = (
            select(counts.c.key, total)
            .where(counts.c.key.in_(trimmed), counts.c.window >= first)
            .group_by(counts.c.key)
        )
        rows = await self.db.run_read(lambda conn: conn.execute(query).all())
        found = {str(row[0]): int(row[1]) for row in rows}
        return [found.get(key, 0) for key in trimmed]


class RequestRateLimiter:
    """At most `per_minute` requests per client address."""

    def __init__(self, database: Database, per_minute: int) -> None:
        self.counter, self.per_minute = WindowedCounter(database, WINDOW_S), per_minute

    async def hit(self, address: str) -> tuple[bool, int]:
        """Count one request; (allowed, seconds until the window ends)."""
        (count,) = await self.counter.add(f"req:{address}")
        return count <= self.per_minute, self.counter.retry_after()


class FailureLimiter:
    """Allows `limit` failures per key (a client, a user, an address) within a window of `window_s` seconds that
    slides: counted in steps of a tenth of it, the failures of the last 0.9-1 window count, so a failure made just
    before a fixed window's end still counts after it."""

    def __init__(self, database: Database, limit: int, window_s: int) -> None:
        self.counter = WindowedCounter(database, max(1, window_s // FAILURE_STEPS), keep_s=window_s)
        self.limit, self.window_s = limit, window_s

    async def blocked(self, *keys: str) -> bool:
        """Whether any of the keys has used up its failures in the window."""
        recent = await self.counter.recent([f"fail:{k}" for k in keys], self.window_s)
        return any(count >= self.limit for count in recent)

    async def record(self, *keys: str) -> None:
        """Count one failure against each key."""
        await self.counter.add(*(f"fail:{k}" for k in keys))


class EventLimiter:
    """At most `limit` events per key within a window of `window_s` seconds (registrations per address)."""

    def __init__(self, database: Database, limit: int, window_s: int, prefix: str) -> None:
        self.counter, self.limit, self.prefix = WindowedCounter(database, window_s), limit, prefix

    async def hit(self, key: str) -> tuple[bool, int]:
        """Count one event; (allowed, seconds until the window ends)."""
        (count,) = await self.counter.add(f"{self.prefix}:{key}")
        return count <= self.limit, self.counter.retry_after()
