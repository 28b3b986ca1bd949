"""A chunk-pool worker for bench/chunk_pool.py that answers a group it has seen before from memory, so that what is
timed is the hand-over between the processes, not the chunking. Run as a ChunkPool worker (`python -m
chunk_pool_instant`), or its `prepare_cached` as a ProcessPoolExecutor task."""

from __future__ import annotations

from typing import Any

from plugkit.plugins.retrieval import chunk_pool

_real = chunk_pool._Worker.prepare
_answers: dict[int, Any] = {}


def _remembered(self: chunk_pool._Worker, texts: list[str]) -> Any:
    key = hash(tuple(texts))
    if key not in _answers:
        _answers[key] = _real(self, texts)
    return _answers[key]


chunk_pool._Worker.prepare = _remembered  # type: ignore[method-assign]

_executor_worker: chunk_pool._Worker | None = None


def init_executor(*arguments: Any) -> None:
    global _executor_worker
    _executor_worker = chunk_pool._Worker(*arguments)


def prepare_cached(texts: list[str]) -> Any:
    assert _executor_worker is not None
    return _executor_worker.prepare(texts)


def prepare(texts: list[str]) -> Any:
    """The real chunking, in a ProcessPoolExecutor worker."""
    assert _executor_worker is not None
    return _real(_executor_worker, texts)


if __name__ == "__main__":
    chunk_pool.main()
