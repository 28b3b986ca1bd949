"""The filterable fields of every indexed chunk as numpy columns, so a metadata filter becomes an id mask fast.

Asking SQLite for the rowids a filter keeps costs tens of milliseconds at a million chunks (about 30 ms for a filter
keeping 10%, 300 ms for one keeping everything), far more than the vector search itself. Here each field is an
integer code per rowid (0: no value or no chunk), the creation time a float (NaN: none), and a filter is a few
vectorised comparisons, about a millisecond per million chunks. The last few masks are kept until the next change.
The columns follow the vector index: the embedded store fills them from the same rows, at the same moments.
They hold the standard fields; a filter over custom metadata keys is answered by SQL and its mask cached here too
(`remember`), until the next change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from plugkit.plugins.retrieval.filters import DATE_FIELD, STRING_FIELDS, And, Equals, Node, Not, Or, Range, keys_of

FIELDS = ("tenant", *STRING_FIELDS)  # then created_ts, in rows given to add
CACHED_MASKS = 8


class FilterColumns:
    def __init__(self) -> None:
        self._codes: dict[str, dict[str, int]] = {name: {} for name in FIELDS}
        self._columns = {name: np.zeros(0, dtype=np.int32) for name in FIELDS}
        self._created = np.zeros(0, dtype=np.float64)
        self._masks: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return int(np.count_nonzero(self._columns["tenant"]))

    @property
    def memory_bytes(self) -> int:
        return sum(c.nbytes for c in self._columns.values()) + self._created.nbytes

    def _reserve(self, size: int) -> None:
        capacity = len(self._created)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 1024)
        for name, column in self._columns.items():
            grown = np.zeros(capacity, dtype=np.int32)
            grown[: len(column)] = column
            self._columns[name] = grown
        created = np.full(capacity, np.nan)
        created[: len(self._created)] = self._created
        self._created = created

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows of (rowid, tenant, document_id, source, source_id, author, url, created_ts); a rowid already
        present is overwritten."""
        if not rows:
            return
        self._masks.clear()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self._reserve(int(ids.max()) + 1)
        for position, name in enumerate(FIELDS, start=1):
            codes = self._codes[name]
            values = [r[position] for r in rows]
            self._columns[name][ids] = [0 if v is None else codes.setdefault(v, len(codes) + 1) for v in values]
        created = [r[len(FIELDS) + 1] for r in rows]
        self._created[ids] = [np.nan if c is None else c for c in created]

    def forget_masks(self) -> None:
        """Drop the cached masks (the next mask of each filter is computed again)."""
        self._masks.clear()

    def remove(self, rowids: Iterable[int]) -> None:
        ids = np.fromiter(rowids, dtype=np.int64)
        ids = ids[ids < len(self._created)]
        if len(ids) == 0:
            return
        self._masks.clear()
        for column in self._columns.values():
            column[ids] = 0
        self._created[ids] = np.nan

    def covers(self, node: Node | None) -> bool:
        """Whether these columns can answer the filter (it compares standard fields only)."""
        return all(key in STRING_FIELDS or key == DATE_FIELD for key in keys_of(node))

    def mask(self, node: Node | None, tenant: str) -> np.ndarray:
        """A boolean mask indexed by rowid: the chunks of `tenant` that match the filter (of standard fields only,
        see `covers`) — what the store's SQL translation of the filter selects."""
        return self.remember(("columns", node, tenant), lambda: self._column(("tenant", tenant)) & self._eval(node))

    def remember(self, key: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The mask cached under `key` since the last change, else `compute()` (then cached)."""
        cached = self._masks.get(key)
        if cached is not None:
            self._masks.move_to_end(key)
            return cached
        mask = compute()
        self._masks[key] = mask
        if len(self._masks) > CACHED_MASKS:
            self._masks.popitem(last=False)
        return mask

    @property
    def size(self) -> int:
        """The length of every mask (one past the highest rowid these columns have room for)."""
        return len(self._created)

    def _column(self, *wanted: tuple[str, Any]) -> np.ndarray:
        mask = np.zeros(len(self._created), dtype=bool)
        for name, value in wanted:
            code = self._codes[name].get(value)
            if code is not None:
                mask |= self._columns[name] == code
        return mask

    def _eval(self, node: Node | None) -> np.ndarray:
        if node is None:
            return np.ones(len(self._created), dtype=bool)
        if isinstance(node, Equals):
            return self._column(*((node.key, v) for v in node.values))
        if isinstance(node, Range):
            mask = np.ones(len(self._created), dtype=bool)
            with np.errstate(invalid="ignore"):  # NaN (no date) compares False, as NULL does in SQL
                for bound, compare in (
                    (node.gt, np.greater),
                    (node.gte, np.greater_equal),
                    (node.lt, np.less),
                    (node.lte, np.less_equal),
                ):
                    if bound is not None:
                        mask &= compare(self._created, bound)
            return mask
        if isinstance(node, Not):
            return ~self._eval(node.part)
        combined = [self._eval(part) for part in node.parts]
        if isinstance(node, And):
            return np.logical_and.reduce(combined) if combined else np.ones(len(self._created), dtype=bool)
        assert isinstance(node, Or)
        return np.logical_or.reduce(combined) if combined else np.zeros(len(self._created), dtype=bool)
