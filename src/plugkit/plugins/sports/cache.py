"""The sports plugin's answer cache: what the balldontlie backend keeps for a while, and the local backend until its
dataset changes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


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
