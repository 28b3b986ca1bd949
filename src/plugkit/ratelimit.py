"""A per-address request rate limit counted in the plugin's database, so several workers share one count."""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from plugkit.schema import versioned
from plugkit.storage import Database

WINDOW_S = 60
metadata = versioned(MetaData(), "ratelimit", "plugkit:migrations/ratelimit")
request_counts = Table(
    "plugkit_request_counts",
    metadata,
    Column("address", String(100), primary_key=True),
    Column("window", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)


class RequestRateLimiter:
    """Counts requests per client address in fixed one-minute windows."""

    def __init__(self, database: Database, per_minute: int) -> None:
        self.db, self.per_minute = database, per_minute

    async def hit(self, address: str) -> tuple[bool, int]:
        """Count one request; (allowed, seconds until the window ends)."""
        now = time.time()
        window = int(now // WINDOW_S)
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        statement = (
            insert(request_counts)
            .values(address=address[:100], window=window, count=1)
            .on_conflict_do_update(index_elements=["address", "window"], set_={"count": request_counts.c.count + 1})
            .returning(request_counts.c.count)
        )

        def work(conn: Connection) -> int:
            count = int(conn.execute(statement).scalar_one())
            if count == 1:  # the first request of a window clears the windows before it
                conn.execute(delete(request_counts).where(request_counts.c.window < window))
            return count

        count = await self.db.run_write(work)
        return count <= self.per_minute, int((window + 1) * WINDOW_S - now) + 1
