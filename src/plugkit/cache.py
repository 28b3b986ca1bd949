"""Answer caches for plugins: `TTLCache` keeps answers for a while (an upstream API's), `DatabaseCache` until the
database they were read from changes (`data_version`: SQLite's, which moves whenever another connection of any
process commits)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Versioned(Protocol):
    async def data_version(self) -> int | None:
        """A number that changes whenever the data changes; None where there is none (nothing is then kept)."""
        ...


class TTLCache:
    """Answers kept for `ttl_s` seconds, at most `size` of them (the oldest go first)."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.size, self.clock = ttl_s, size, clock
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def get(self, key: Any) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= self.clock():
            del self._items[key]
            return None
        return value

    def put(self, key: Any, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        self._items[key] = (self.clock() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class DatabaseCache:
    """Answers read from `database` (a `plugkit.Database`, or any store with a `data_version`), at most `size` of
    them, kept until it changes: each lookup first reads its data_version (one PRAGMA on SQLite) and drops every
    answer when it moved. On a database without a data_version (PostgreSQL) nothing is kept. A list answer is handed
    out as a copy."""

    def __init__(self, database: Versioned, size: int) -> None:
        self.db = database
        self._answers = TTLCache(math.inf, size)
        self._version: int | None = -1

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def version(self) -> int | None:
        """The data_version the latest lookup read (None on a database without one, -1 before any lookup): what
        was derived from the database at this version is still current."""
        return self._version

    async def get(self, key: Any, compute: Callable[[], Awaitable[T]], keep: Callable[[T], bool] | None = None) -> T:
        """The answer for `key`, computed when not kept; `keep` says whether a computed answer is kept (e.g. not a
        large one)."""
        version = await self.db.data_version()
        if version is None:
            return await compute()
        if version != self._version:
            self._answers.clear()
            self._version = version
        found = self._answers.get(key)
        if found is None:
            found = await compute()
            if keep is None or keep(found):
                self._answers.put(key, found)
        return list(found) if isinstance(found, list) else found  # type: ignore[return-value]
