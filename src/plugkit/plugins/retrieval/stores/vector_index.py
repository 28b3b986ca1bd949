"""In-memory vector indexes behind a small interface, so that an ANN index can replace exact search later.

Vectors are unit length; the score is the inner product (cosine similarity). Ids are the store's integer row ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class VectorIndex(Protocol):
    dimension: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) the vectors of `ids`."""
        ...

    def remove(self, ids: Iterable[int]) -> None:
        """Forget `ids`; unknown ids are ignored."""
        ...

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ids and scores of the `k` best vectors, best first, among the `allowed` ones when given: an array of
        ids, or a boolean mask indexed by id."""
        ...

    def save(self, path: Path, marker: dict[str, str]) -> None:
        """Write the index to `path` atomically, with `marker` (what state of the store it reflects)."""
        ...


def as_mask(allowed: np.ndarray) -> np.ndarray:
    """An allowed set as a boolean mask indexed by id (a mask is returned as it is; ids become one)."""
    allowed = np.asarray(allowed)
    if allowed.dtype == bool:
        return allowed
    mask = np.zeros(int(allowed.max()) + 1 if len(allowed) else 0, dtype=bool)
    mask[allowed.astype(np.int64)] = True
    return mask


def allowed_count(allowed: np.ndarray) -> int:
    allowed = np.asarray(allowed)
    return int(np.count_nonzero(allowed)) if allowed.dtype == bool else len(allowed)


class ExactIndex:
    """Exact inner-product search over a float32 matrix grown by doubling; removal swaps in the last row."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._vectors = np.zeros((0, dimension), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._size = 0
        self._pos: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    def ids(self) -> np.ndarray:
        return self._ids[: self._size].copy()

    def has(self, rowid: int) -> bool:
        return rowid in self._pos

    def rescore(self, ids: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best of `ids` by exact score, best first (ids the index does not hold are dropped)."""
        pos = self._pos
        ids = np.asarray(ids, dtype=np.int64)
        positions = np.fromiter((pos.get(i, -1) for i in ids.tolist()), dtype=np.int64, count=len(ids))
        positions = positions[positions >= 0]
        if len(positions) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self._vectors[positions] @ np.asarray(query, dtype=np.float32).reshape(self.dimension)
        order = np.argsort(-scores, kind="stable")[:k]
        return self._ids[positions[order]].copy(), scores[order]

    def vectors(self) -> np.ndarray:
        """The vectors, in the order of `ids()` (a view: copy before changing the index)."""
        return self._vectors[: self._size]

    def vectors_of(self, ids: list[int]) -> np.ndarray:
        """The vectors of `ids`, which the index holds, in their order (a copy)."""
        return self._vectors[np.fromiter((self._pos[i] for i in ids), dtype=np.int64, count=len(ids))]

    def last(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids and vectors of the last `count` rows (what the last `add` of as many ids added; views)."""
        return self._ids[self._size - count : self._size], self._vectors[self._size - count : self._size]

    def _reserve(self, extra: int) -> None:
        need = self._size + extra
        if need <= len(self._ids):
            return
        capacity = max(need, 2 * len(self._ids), 1024)
        vectors = np.zeros((capacity, self.dimension), dtype=np.float32)
        ids = np.zeros(capacity, dtype=np.int64)
        vectors[: self._size] = self._vectors[: self._size]
        ids[: self._size] = self._ids[: self._size]
        self._vectors, self._ids = vectors, ids

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        self.remove([int(i) for i in ids if int(i) in self._pos])
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        n, start = len(ids), self._size
        self._reserve(n)
        self._vectors[start : start + n] = vectors
        self._ids[start : start + n] = ids
        self._pos.update(zip(ids.tolist(), range(start, start + n), strict=True))
        self._size += n

    def remove(self, ids: Iterable[int]) -> None:
        for rowid in ids:
            pos = self._pos.pop(int(rowid), None)
            if pos is None:
                continue
            last = self._size - 1
            if pos != last:
                moved = int(self._ids[last])
                self._vectors[pos] = self._vectors[last]
                self._ids[pos] = moved
                self._pos[moved] = pos
            self._size = last

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        query = np.asarray(query, dtype=np.float32).reshape(self.dimension)
        if allowed is None:
            positions = None
            matrix = self._vectors[: self._size]
        else:
            mask = as_mask(allowed)
            ids = self._ids[: self._size]
            keep = np.zeros(self._size, dtype=bool)
            inside = ids < len(mask)
            keep[inside] = mask[ids[inside]]
            positions = np.flatnonzero(keep)
            matrix = self._vectors[positions]
        if len(matrix) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = matrix @ query
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        found = top if positions is None else positions[top]
        return self._ids[found].copy(), scores[top]

    def save(self, path: Path, marker: dict[str, str]) -> None:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # workers sharing a directory each write their own
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {f"marker_{k}": np.array(v) for k, v in marker.items()}
            np.savez(fh, ids=self._ids[: self._size], vectors=self._vectors[: self._size], **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dimension: int) -> tuple[ExactIndex, dict[str, str]]:
        """An index saved by `save`, and its marker. Raises ValueError when the file is unreadable or mismatched."""
        try:
            with np.load(path, allow_pickle=False) as data:
                ids, vectors = data["ids"], data["vectors"]
                marker = {k[len("marker_") :]: str(data[k]) for k in data.files if k.startswith("marker_")}
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"unreadable index file {path}: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] != dimension or len(ids) != len(vectors):
            raise ValueError(f"index file {path} does not hold {dimension}-dimensional vectors")
        index = cls(dimension)
        index.add(ids, vectors)
        return index, marker
